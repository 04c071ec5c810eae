//! Where a browser may be sent after a login: only to URLs the policy lists
//! (no open redirect).

use url::Url;

/// Whether `target` is allowed by `allowed`: an entry ending in `/` admits
/// every URL on the same origin whose path lies below it; any other entry
/// admits exactly itself. Targets with credentials, a non-http(s) scheme or
/// backslashes are never allowed.
pub fn allowed(target: &str, allowed: &[String]) -> bool {
    if target.contains('\\') || target.chars().any(char::is_control) {
        return false;
    }
    let Ok(url) = Url::parse(target) else {
        return false;
    };
    if !matches!(url.scheme(), "https" | "http")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    allowed.iter().any(|entry| {
        let Ok(base) = Url::parse(entry) else {
            return false;
        };
        if entry.ends_with('/') {
            base.origin() == url.origin() && url.path().starts_with(base.path())
        } else {
            base == url
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_entries_admit_only_themselves() {
        let l = list(&["https://app.example.com/home"]);
        assert!(allowed("https://app.example.com/home", &l));
        assert!(!allowed("https://app.example.com/home/x", &l));
        assert!(!allowed("https://app.example.com/homex", &l));
    }

    #[test]
    fn prefix_entries_admit_their_subtree_on_the_same_origin() {
        let l = list(&["https://app.example.com/"]);
        assert!(allowed("https://app.example.com/a/b?c=d", &l));
        assert!(!allowed("https://app.example.com.evil.com/", &l));
        assert!(!allowed("https://app.example.com:8443/", &l));
        assert!(!allowed("http://app.example.com/", &l));
    }

    #[test]
    fn tricks_are_refused() {
        let l = list(&["https://app.example.com/"]);
        assert!(!allowed("//evil.com/", &l));
        assert!(!allowed("https://app.example.com@evil.com/", &l));
        assert!(!allowed("https://user:pw@app.example.com/", &l));
        assert!(!allowed("https:\\\\evil.com", &l));
        assert!(!allowed("javascript:alert(1)", &l));
        assert!(!allowed("https://app.example.com/\n", &l));
        assert!(!allowed("https://app.example.com/", &[]));
    }
}
