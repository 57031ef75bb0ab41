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
    tls: bool,
    /// The password of user `postgres`, once one is required.
    password: Option<String>,
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
        let pg = Postgres { port: free_port(), dir, tls: false, password: None };
        pg.resume();
        pg
    }

    /// A cluster that accepts only TLS connections (`hostssl` in pg_hba.conf), with a
    /// certificate for 127.0.0.1 signed by a CA of its own ([`Postgres::ca_file`]).
    pub fn start_tls() -> Postgres {
        let mut pg = Postgres::start();
        pg.stop();
        make_certificates(pg.dir.path());
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.dir.path()).status();
        let _ = Command::new("chmod").arg("600").arg(pg.dir.path().join("server.key")).status();
        let hba = pg.dir.path().join("data/pg_hba.conf");
        let rules = fs::read_to_string(&hba).expect("pg_hba.conf");
        let only_tls: String = rules
            .lines()
            .map(|l| if l.starts_with("host ") { l.replacen("host ", "hostssl ", 1) } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        fs::write(&hba, only_tls + "\n").expect("writable");
        pg.tls = true;
        pg.resume();
        pg
    }

    /// A cluster that asks for a password (`scram-sha-256` on TCP): user `postgres` with
    /// `password`.
    pub fn start_with_password(password: &str) -> Postgres {
        let mut pg = Postgres::start();
        pg.psql(&format!("ALTER USER postgres PASSWORD '{password}'"));
        let hba = pg.dir.path().join("data/pg_hba.conf");
        let rules = fs::read_to_string(&hba).expect("pg_hba.conf");
        let with_password: String = rules
            .lines()
            .map(|l| if l.starts_with("host ") { l.replace("trust", "scram-sha-256") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        fs::write(&hba, with_password + "\n").expect("writable");
        // Reloaded, not restarted: an immediate stop could lose the uncommitted-to-disk
        // password (the test clusters run with `synchronous_commit=off`).
        let out = as_postgres(&pg_bin("pg_ctl"))
            .args(["reload", "-D"])
            .arg(pg.dir.path().join("data"))
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl reload failed: {}", String::from_utf8_lossy(&out.stderr));
        // The reload is a signal: wait until a connection without the password is refused.
        let started = Instant::now();
        loop {
            let out = as_postgres(&pg_bin("psql"))
                .args([
                    "-w",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg.port.to_string(),
                    "-U",
                    "postgres",
                    "-c",
                    "SELECT 1",
                ])
                .env("PGPASSWORD", "")
                .output()
                .expect("psql runs");
            if !out.status.success() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "pg_hba.conf was not reloaded");
            std::thread::sleep(Duration::from_millis(50));
        }
        pg.password = Some(password.to_string());
        pg
    }

    /// The CA certificate of a TLS cluster.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            let d = self.dir.path().display();
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key"
            ));
        }
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

    /// Runs SQL through psql over TLS (for a cluster from [`Postgres::start_tls`]).
    pub fn psql_tls(&self, sql: &str) {
        let out = as_postgres(&pg_bin("psql"))
            .arg(format!("{}?sslmode=verify-full&sslrootcert={}", self.url(), self.ca_file().display()))
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs SQL through psql.
    pub fn psql(&self, sql: &str) {
        let out = as_postgres(&pg_bin("psql"))
            .env("PGPASSWORD", self.password.as_deref().unwrap_or_default())
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
    /// Further `redis-server` arguments, kept for a restart.
    extra: Vec<String>,
}

/// Writes `ca.crt`/`ca.key` (a CA of its own) and `server.crt`/`server.key` (for 127.0.0.1,
/// signed by it) into `dir`.
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=preheat test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("writable");
    openssl(
        dir,
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
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (`bash scripts/test.sh` installs it)");
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
        make_certificates(dir.path());
        Self::launch(Some(dir))
    }

    /// Starts a server with further configuration, such as `--rename-command EVAL ""`.
    #[allow(dead_code)] // not used by tests/soak.rs, which includes this file
    pub fn start_with(extra: &[&str]) -> Redis {
        Self::launch_on(free_port(), None, extra.iter().map(|a| a.to_string()).collect())
    }

    fn launch(tls: Option<tempfile::TempDir>) -> Redis {
        Self::launch_on(free_port(), tls, Vec::new())
    }

    /// Kills the server and starts a new, empty one on the same port.
    #[allow(dead_code)] // for tests/soak.rs, which includes this file
    pub fn restart(&mut self) {
        self.kill();
        let tls = self.tls.take();
        *self = Self::launch_on(self.port, tls, std::mem::take(&mut self.extra));
    }

    fn launch_on(port: u16, tls: Option<tempfile::TempDir>, extra: Vec<String>) -> Redis {
        let port = port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]).args(&extra);
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
        let child = cmd
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (`bash scripts/test.sh` installs it)");
        let redis = Redis { child, port: port.parse().expect("a port"), tls, extra };
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

/// A request as a test HTTP server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What a test HTTP server answers.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// `200 OK` with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply { status: 200, headers: Vec::new(), body: body.into(), delay: Duration::ZERO }
    }

    /// An empty answer with `status`.
    pub fn status(status: u16) -> Reply {
        Reply { status, ..Reply::ok("") }
    }

    /// The same with a header added.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on loopback (keep-alive, one thread a connection) whose answers a
/// test decides; it records every request. Stopped when dropped.
pub struct HttpServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpServer {
    /// Starts a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> HttpServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("bound").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen2, stop2, connections2) = (seen.clone(), stop.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                connections2.fetch_add(1, Ordering::SeqCst);
                let (handler, seen) = (handler.clone(), seen2.clone());
                std::thread::spawn(move || serve(conn, &*handler, &seen));
            }
        });
        HttpServer { port, seen, stop, connections }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

fn serve(conn: std::net::TcpStream, handler: &Handler, seen: &std::sync::Mutex<Vec<Seen>>) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(conn.try_clone().expect("clonable socket"));
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) =
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let request = Seen { method, target, headers };
        seen.lock().expect("not poisoned").push(request.clone());
        let reply = handler(&request);
        std::thread::sleep(reply.delay);
        let mut head = format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\n", reply.status, reply.body.len());
        for (n, v) in &reply.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let body: &[u8] = if request.method == "HEAD" { &[] } else { &reply.body };
        if out.write_all(head.as_bytes()).and_then(|()| out.write_all(body)).is_err() {
            return;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A Redis Cluster of its own: `masters` redis-server processes in cluster mode joined by
/// `redis-cli --cluster create`, no replicas. `cluster-require-full-coverage no`, so the
/// other masters keep serving when one is stopped. Killed when dropped.
pub struct RedisCluster {
    children: Vec<Option<std::process::Child>>,
    /// The masters' ports (127.0.0.1).
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the masters and waits until the cluster reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports = Vec::new();
        // The cluster bus listens on port + 10000.
        while ports.len() < masters {
            let port = free_port();
            if port < 55000
                && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
                && !ports.contains(&port)
            {
                ports.push(port);
            }
        }
        let mut children = Vec::new();
        for port in &ports {
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--port"])
                .arg(port.to_string())
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-require-full-coverage", "no", "--cluster-config-file"])
                .arg(format!("nodes-{port}.conf"))
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server runs (`bash scripts/test.sh` installs it)");
            children.push(Some(child));
        }
        let cluster = RedisCluster { children, ports, _dir: dir };
        for port in &cluster.ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("valid URL");
            let started = Instant::now();
            while client.get_connection().is_err() {
                assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (`bash scripts/test.sh` installs it)");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let started = Instant::now();
        while !cluster.ports.iter().all(|p| cluster.info(*p).contains("cluster_state:ok")) {
            assert!(started.elapsed() < Duration::from_secs(20), "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn info(&self, port: u16) -> String {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
            .unwrap_or_default()
    }

    /// `redis+cluster://` naming the first master only: the rest is discovered.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.ports[0])
    }

    /// A plain connection to master `i`.
    pub fn node(&self, i: usize) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[i]))
            .and_then(|c| c.get_connection())
            .expect("the node answers")
    }

    /// The index of the master that serves `key`: the one that does not answer `MOVED`.
    pub fn owner(&self, key: &str) -> usize {
        (0..self.ports.len())
            .find(|&i| {
                self.children[i].is_some()
                    && redis::cmd("EXISTS").arg(key).query::<i64>(&mut self.node(i)).is_ok()
            })
            .expect("a live master serves the key")
    }

    /// `GET key` on its master.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET").arg(key).query(&mut self.node(self.owner(key))).expect("GET")
    }

    /// `PTTL key` on its master, `None` without expiry or key.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let ms: i64 = redis::cmd("PTTL").arg(key).query(&mut self.node(self.owner(key))).expect("PTTL");
        (ms >= 0).then(|| Duration::from_millis(ms as u64))
    }

    /// Kills master `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// A MariaDB server of its own (`mariadbd` from the installed packages, a temp datadir, a
/// free port), run as the `mysql` user when we are root; user `root` with no password over
/// TCP. Killed when dropped.
pub struct Mariadb {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    tls: bool,
}

impl Mariadb {
    /// Initializes a datadir and starts the server.
    pub fn start() -> Mariadb {
        Mariadb::start_with(false)
    }

    /// A server that accepts only TLS connections (`require_secure_transport`), with a
    /// certificate for 127.0.0.1 signed by a CA of its own ([`Mariadb::ca_file`]).
    pub fn start_tls() -> Mariadb {
        Mariadb::start_with(true)
    }

    fn start_with(tls: bool) -> Mariadb {
        let dir = tempfile::tempdir().expect("temp dir");
        if tls {
            make_certificates(dir.path());
        }
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            let _ = Command::new("chown").args(["-R", "mysql:mysql"]).arg(dir.path()).status();
        }
        let mut install = Command::new("mariadb-install-db");
        install.args(["--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db"]);
        if root {
            install.arg("--user=mysql");
        }
        let out = install
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut db = Mariadb { dir, child: None, port: free_port(), tls };
        db.resume();
        db
    }

    /// The CA certificate of a TLS server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults");
        if Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0")) {
            cmd.arg("--user=mysql");
        }
        cmd.arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M", "--innodb-flush-log-at-trx-commit=0"])
            .args(["--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin"]);
        if self.tls {
            cmd.arg(format!("--ssl-cert={}", d.join("server.crt").display()))
                .arg(format!("--ssl-key={}", d.join("server.key").display()))
                .arg(format!("--ssl-ca={}", d.join("ca.crt").display()))
                .arg("--require-secure-transport=ON");
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let up = self.client().args(["-e", "SELECT 1"]).output().is_ok_and(|o| o.status.success());
            if up {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "MariaDB did not start: {}",
                fs::read_to_string(d.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server at once (connections are cut).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection URL for database `db` as `root`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "--default-character-set=utf8mb4", "-h", "127.0.0.1", "-P"]).args([
            &self.port.to_string(),
            "-u",
            "root",
        ]);
        if self.tls {
            c.arg(format!("--ssl-ca={}", self.ca_file().display()));
        }
        c
    }

    /// Runs SQL through the `mariadb` client.
    pub fn sql(&self, sql: &str) {
        let out = self.client().args(["-e", sql]).output().expect("mariadb runs");
        assert!(out.status.success(), "mariadb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy on loopback to `target` that can cut every connection through it, so a test
/// can break connections in the middle of a query.
pub struct CuttingProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttingProxy {
    /// Starts forwarding to `127.0.0.1:target`.
    pub fn start(target: u16) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("bound").port();
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let open = streams.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else { continue };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let (Ok(client_end), Ok(server_end)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let Ok(mut kept) = open.lock() {
                    kept.extend([client_end.try_clone(), server_end.try_clone()].into_iter().flatten());
                }
                pipe(client, server_end);
                pipe(server, client_end);
            }
        });
        CuttingProxy { port, streams }
    }

    /// Cuts every connection open through the proxy; new ones are let through.
    pub fn cut(&self) {
        if let Ok(mut streams) = self.streams.lock() {
            for stream in streams.drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// A memcached of its own on a free port, killed when dropped.
#[allow(dead_code)] // not used by tests/soak.rs, which includes this file
pub struct Memcached {
    child: Option<std::process::Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

#[allow(dead_code)] // not used by tests/soak.rs, which includes this file
impl Memcached {
    /// Starts `memcached` with 64 MiB and waits until it answers.
    pub fn start() -> Memcached {
        let port = free_port();
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-m", "64"]);
        if Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0")) {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("memcached runs (`bash scripts/test.sh` installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "memcached did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Memcached { child: Some(child), port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `request` and reads the one-line reply.
    pub fn command(&self, request: &[u8]) -> String {
        use std::io::{BufRead, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream.write_all(request).expect("sends");
        let mut line = String::new();
        std::io::BufReader::new(stream).read_line(&mut line).expect("reads");
        line.trim_end().to_string()
    }

    /// The value of `key`, byte for byte (`mg key v`).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        use std::io::{BufRead, Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream.write_all(format!("mg {key} v\r\n").as_bytes()).expect("sends");
        let mut reader = std::io::BufReader::new(stream);
        let mut head = String::new();
        reader.read_line(&mut head).expect("reads");
        let size: usize = head.trim_end().strip_prefix("VA ")?.split(' ').next()?.parse().ok()?;
        let mut value = vec![0; size];
        reader.read_exact(&mut value).expect("reads the value");
        Some(value)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}
