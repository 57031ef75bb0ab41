//! Throwaway servers for tests: each test starts its own on a free port in a temp dir, so
//! tests run in parallel and may stop or kill their server. Nothing shared is touched.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(tool: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

/// A PostgreSQL cluster of its own, stopped when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Postgres {
    /// Initializes and starts a cluster (trust auth, user `postgres`, database `postgres`).
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
        let data = dir.path().join("data");
        let out = as_postgres(&pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let pg = Postgres { port: free_port(), dir };
        pg.resume();
        pg
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(&pg_bin("pg_ctl"))
            .args(["-w", "-t", "30", "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "-D"])
            .arg(self.dir.path().join("data"))
            .arg("start")
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&out.stderr));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&self) {
        let _ = as_postgres(&pg_bin("pg_ctl"))
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }

    /// A connection URL for database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL through psql.
    pub fn psql(&self, sql: &str) {
        let out = as_postgres(&pg_bin("psql"))
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A redis-server of its own (no persistence), killed when dropped.
pub struct Redis {
    child: std::process::Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// With TLS: the directory holding `ca.crt` and the server's certificate and key.
    tls: Option<tempfile::TempDir>,
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Redis {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Redis {
        Self::launch(None)
    }

    /// Starts a server that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// of its own ([`Redis::ca_file`]).
    pub fn start_tls() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=preheat test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        openssl(dir.path(), &ca);
        let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(dir.path(), &csr);
        fs::write(dir.path().join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("writable");
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "san.ext",
                "-out",
                "server.crt",
            ],
        );
        Self::launch(Some(dir))
    }

    fn launch(tls: Option<tempfile::TempDir>) -> Redis {
        let port = free_port().to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &tls {
            None => cmd.args(["--port", &port]),
            Some(dir) => cmd
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"])
                .current_dir(dir.path())
                .args([
                    "--tls-cert-file",
                    "server.crt",
                    "--tls-key-file",
                    "server.key",
                    "--tls-ca-cert-file",
                    "ca.crt",
                ]),
        };
        let child = cmd.stdout(std::process::Stdio::null()).spawn().expect("redis-server runs");
        let redis = Redis { child, port: port.parse().expect("a port"), tls };
        let started = Instant::now();
        while redis.client().get_connection().is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The CA certificate of a TLS server.
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").path().join("ca.crt")
    }

    /// A client for assertions (as the default user).
    pub fn client(&self) -> redis::Client {
        match &self.tls {
            None => redis::Client::open(self.url()).expect("valid URL"),
            Some(_) => {
                let ca = fs::read(self.ca_file()).expect("CA readable");
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca) };
                redis::Client::build_with_tls(self.url(), certificates).expect("valid URL")
            }
        }
    }

    /// Kills the server (SIGKILL): connections drop mid-flight.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
