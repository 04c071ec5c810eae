//! A real browser for tests: Debian's chromium, headless, driven through
//! chromedriver (WebDriver over plain HTTP on loopback).

use std::time::Duration;

use serde_json::json;

/// Debian's chromium, headless, through chromedriver; both stop when the
/// returned child (the driver) is killed.
pub async fn chrome() -> (std::process::Child, fantoccini::Client) {
    let port = super::free_port();
    let driver = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; `make test` installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1000,700"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = fantoccini::ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session");
    (driver, client)
}

pub async fn body_text(browser: &fantoccini::Client) -> String {
    match browser.find(fantoccini::Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the browser is at `url` with `needle` on the page (the end
/// of a redirect chain); returns the page's text.
pub async fn wait_until_at(
    browser: &fantoccini::Client,
    url: &str,
    needle: &str,
    limit: Duration,
) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let at = browser.current_url().await.unwrap();
        let text = body_text(browser).await;
        if at.as_str() == url && text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never back at the app: at {at}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
