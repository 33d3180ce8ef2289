//! The servers pdp needs: those `.ci/run` started (`TEST_*`), or private ones a fault run starts
//! on free ports so that it can crash and restart them without touching anybody else's —
//! PostgreSQL (`initdb`, `pg_ctl`), the tansu broker and Redis. Each private server is stopped
//! when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Where pdp finds its servers.
#[derive(Debug, Clone)]
pub struct Servers {
    pub brokers: String,
    /// A PostgreSQL URL whose user may create databases (`…/test`).
    pub database: String,
    pub redis: String,
    pub s3: String,
    pub bucket: String,
}

fn env_var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

impl Servers {
    /// The servers `.ci/run` starts, or those the `TEST_*` variables name.
    pub fn from_env() -> Self {
        Self {
            brokers: env_var("TEST_KAFKA_BROKERS", "127.0.0.1:9092"),
            database: env_var(
                "TEST_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            redis: env_var("TEST_REDIS_URL", "redis://127.0.0.1:6379"),
            s3: env_var("TEST_S3_ENDPOINT", "http://127.0.0.1:9000"),
            bucket: env_var("TEST_S3_BUCKET", "pdp-test"),
        }
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn wait_until(what: &str, seconds: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A server this run owns, started again on the same port and data.
pub struct Private {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Private {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
        let port = self.port;
        wait_until(self.name, 30, || listening(port));
    }

    /// `kill -9`, then the same server on the same data.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        self.start();
    }

    /// `kill -9`: the server is gone until [`Private::start_again`].
    pub fn crash(&mut self) {
        kill(&mut self.child);
    }

    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.start();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// PostgreSQL in a data directory of its own: `initdb`, then `postgres` in the foreground (as
/// the `postgres` user when this runs as root, which PostgreSQL refuses to run as).
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl PrivatePostgres {
    pub fn start(dir: &Path) -> Self {
        let bin = PathBuf::from(env_var("PG_BINDIR", &pg_bindir()));
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown of {}", dir.display());
        }
        let mut pg = Self {
            dir: dir.to_path_buf(),
            bin,
            port: free_port(),
            child: None,
        };
        let initdb = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        pg.launch();
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("pg"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "max_connections=300", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let url = self.url("postgres");
        wait_until("postgres", 60, || {
            Command::new("psql")
                .args([&url, "-tAc", "SELECT 1"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// A database URL on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A crash and a restart: an immediate stop (every backend quits at once, no checkpoint,
    /// as after a crash), then the server again on the same data, which PostgreSQL recovers
    /// from its WAL. Connections pdp held are broken.
    pub fn restart(&mut self) {
        self.stop_immediately();
        self.launch();
    }

    fn stop_immediately(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("pg"))
            .args(["stop", "-m", "immediate", "-w"])
            .output();
        kill(&mut self.child);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pg_bindir() -> String {
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|dir| Path::new(dir).join("initdb").exists())
        .or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .map(|e| e.path().join("bin"))
                .collect();
            versions.sort();
            versions.pop().map(|p| p.display().to_string())
        })
        .expect("PostgreSQL's server programs (PG_BINDIR)")
}

/// The broker, PostgreSQL, Redis and the S3-API server, all private to one run.
pub struct PrivateServers {
    pub broker: Private,
    pub postgres: PrivatePostgres,
    pub redis: Private,
    pub s3: Private,
    /// Dropped last (fields drop in order): PostgreSQL is stopped through its data directory.
    pub dir: tempfile::TempDir,
}

impl PrivateServers {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL's own user must reach its data directory inside.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let broker_port = free_port();
        let tansu = env_var("TANSU", "/var/lib/pdp-tools/bin/tansu");
        let listener = format!("tcp://127.0.0.1:{broker_port}");
        let mut broker = Private {
            name: "tansu",
            program: tansu.into(),
            args: vec![
                "broker".into(),
                "--listener-url".into(),
                listener.clone(),
                "--advertised-listener-url".into(),
                listener,
                "--storage-engine".into(),
                "sqlite://tansu.db".into(),
            ],
            dir: dir.path().to_path_buf(),
            port: broker_port,
            child: None,
        };
        broker.start();
        let redis_port = free_port();
        let mut redis = Private {
            name: "redis",
            program: "redis-server".into(),
            args: [
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(String::from)
            .to_vec(),
            dir: dir.path().to_path_buf(),
            port: redis_port,
            child: None,
        };
        redis.start();
        let postgres = PrivatePostgres::start(&dir.path().join("postgres"));
        let s3_port = free_port();
        let mut s3 = Private {
            name: "moto",
            program: "python3".into(),
            args: [
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &s3_port.to_string(),
            ]
            .map(String::from)
            .to_vec(),
            dir: dir.path().to_path_buf(),
            port: s3_port,
            child: None,
        };
        s3.start();
        let bucket = super::call(s3_port, "PUT", "/pdp-test", None, None);
        assert_eq!(
            bucket.0, 200,
            "the S3 server makes the bucket: {}",
            bucket.1
        );
        Self {
            broker,
            postgres,
            redis,
            s3,
            dir,
        }
    }

    pub fn servers(&self) -> Servers {
        Servers {
            brokers: format!("127.0.0.1:{}", self.broker.port),
            database: self.postgres.url("postgres"),
            redis: format!("redis://127.0.0.1:{}", self.redis.port),
            s3: format!("http://127.0.0.1:{}", self.s3.port),
            bucket: "pdp-test".into(),
        }
    }
}
