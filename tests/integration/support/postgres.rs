//! A real PostgreSQL server on loopback, in a fresh data directory, for one
//! test: Debian's `postgresql` package (15), which `make test` installs, or
//! a recent release (18) that `make test` fetches with
//! `tools/postgres/fetch.sh`, on the other side of PostgreSQL 16's
//! CREATEROLE and grantor changes.
//! As root it runs as the `postgres` system user, as PostgreSQL requires.
//! It accepts TCP connections over TLS only (`hostssl`), with a server
//! certificate for 127.0.0.1 signed by a CA made for the test.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Which server to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Debian's package: the newest version under /usr/lib/postgresql.
    Debian,
    /// The server in `$ROSTER_POSTGRES_RECENT` (set by `make test`).
    Recent,
}

impl Release {
    fn bin(self, name: &str) -> PathBuf {
        match self {
            Release::Debian => debian_bin(name),
            Release::Recent => PathBuf::from(std::env::var_os("ROSTER_POSTGRES_RECENT").expect(
                "ROSTER_POSTGRES_RECENT names a recent PostgreSQL's bin directory \
                 (`make test` sets it from tools/postgres/fetch.sh)",
            ))
            .join(name),
        }
    }
}

pub struct Postgres {
    pub port: u16,
    /// The server's major version.
    pub version: i32,
    release: Release,
    /// The CA that signed the server's certificate (PEM).
    pub ca_pem: Vec<u8>,
    child: Child,
    dir: PathBuf,
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The newest server Debian's packages installed.
fn debian_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian's postgresql; `make test` installs it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name)
}

fn as_server_user(program: PathBuf) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// A fresh Debian cluster whose superuser `postgres` logs in with
    /// `password` (scram over TCP), listening on a free loopback port.
    pub async fn start(password: &str) -> Self {
        Self::start_release(Release::Debian, password).await
    }

    /// The same, on the server `release` names.
    pub async fn start_release(release: Release, password: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("roster-pg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, password).unwrap();
        let data = dir.join("data");
        let ca_pem = certificates(&dir);
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let initdb = as_server_user(release.bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        // TCP over TLS only; the socket stays for pg_ctl.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let port = super::free_port();
        let child = as_server_user(release.bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "ssl=on",
            ])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("server.crt").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting postgres");
        let mut server = Self {
            port,
            version: 0,
            release,
            ca_pem,
            child,
            dir,
        };
        let started = Instant::now();
        while server
            .connect("postgres", password, "postgres")
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let version: i32 = server
            .connect("postgres", password, "postgres")
            .await
            .unwrap()
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .unwrap()
            .get(0);
        server.version = version / 10_000;
        if release == Release::Recent {
            assert!(server.version >= 16, "the recent server is {version}");
        }
        server
    }

    fn config(&self, user: &str, password: &str, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database);
        config
    }

    /// A connection as `user` to `database`, over TLS checked against the CA.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let mut config = self.config(user, password, database);
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        let (client, connection) = config.connect(tls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// A plain TCP connection attempt (the server refuses it).
    pub async fn connect_plain(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let mut config = self.config(user, password, "postgres");
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        config.connect(tokio_postgres::NoTls).await.map(|_| ())
    }
}

/// A CA and a server certificate for 127.0.0.1 it signed, written into
/// `dir` (server.crt, server.key) by the openssl CLI; returns the CA's PEM.
fn certificates(dir: &std::path::Path) -> Vec<u8> {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's; `make test` installs it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=roster-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::read(dir.join("ca.crt")).unwrap()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The server itself, not only `runuser` in front of it.
        let _ = as_server_user(self.release.bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
