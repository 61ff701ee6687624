//! Stops and starts this machine's PostgreSQL and RabbitMQ (the Debian packages CI installs:
//! `pg_ctlcluster`, `rabbitmqctl`). An [`Outage`] starts its service again when dropped, so a
//! failed assertion never leaves the machine without its database or broker.
//!
//! Only a server on this machine can be restarted: a backend URL naming another host, or a
//! machine without the commands, skips the test — under `CI=true` it fails instead.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantry_testkit::proxy::TcpProxy;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// `None` after saying why; under CI=true a panic instead.
fn unavailable<T>(why: String) -> Option<T> {
    if in_ci() {
        panic!("CI=true but the fault test cannot restart a service: {why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// `program` on PATH or in the system directories Debian installs it to.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// Runs `program args` (through `sudo -n` unless root); Err carries its output.
fn run(program: &PathBuf, args: &[&str]) -> Result<(), String> {
    let mut command = if is_root() {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-n").arg(program);
        sudo
    };
    let output = command
        .args(args)
        .output()
        .map_err(|error| format!("{} {args:?}: {error}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?} exited {}: {}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

pub(crate) use tenantry_e2e::host_and_port;

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

/// Starts a stopped service again and waits until it answers.
type Starter = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A stopped service; started again by [`Outage::end`] or, failing that, on drop.
pub struct Outage {
    service: &'static str,
    start: Starter,
    began: Instant,
    over: bool,
}

impl Outage {
    /// Starts the service again, waits until it answers, and returns how long it was down.
    pub async fn end(mut self) -> Duration {
        let start = self.start.clone();
        let started = tokio::task::spawn_blocking(move || start())
            .await
            .expect("start task");
        if let Err(error) = started {
            // Dropping `self` tries once more.
            panic!("cannot start {} again: {error}", self.service);
        }
        self.over = true;
        self.began.elapsed()
    }

    /// An outage made by cutting `proxy` (the backend itself keeps running); restored on
    /// [`Outage::end`] or drop.
    pub async fn cut(service: &'static str, proxy: Arc<TcpProxy>) -> Self {
        proxy.cut().await;
        Self {
            service,
            start: Arc::new(move || {
                proxy.restore();
                Ok(())
            }),
            began: Instant::now(),
            over: false,
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over
            && let Err(error) = (self.start)()
        {
            eprintln!("could not restore {}: {error}", self.service);
        }
    }
}

/// The local PostgreSQL cluster behind a `postgres://` URL.
pub struct Postgres {
    pg_ctlcluster: PathBuf,
    version: String,
    cluster: String,
}

impl Postgres {
    /// The cluster serving `url`, if this machine can restart it.
    pub fn locate(url: &str) -> Option<Self> {
        let Some((host, port)) = host_and_port(url, 5432) else {
            return unavailable(format!("cannot read the host of {url}"));
        };
        if !is_local(&host) {
            return unavailable(format!("PostgreSQL at {host} is not on this machine"));
        }
        let (Some(pg_ctlcluster), Some(pg_lsclusters)) =
            (find("pg_ctlcluster"), find("pg_lsclusters"))
        else {
            return unavailable("pg_ctlcluster is not installed (Debian postgresql-common)".into());
        };
        // `15 main 5432 online postgres /var/lib/… /var/log/…`
        let listing = Command::new(pg_lsclusters)
            .arg("--no-header")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        let found = listing.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 4 && fields[2] == port.to_string() && fields[3] == "online")
                .then(|| (fields[0].to_string(), fields[1].to_string()))
        });
        let Some((version, cluster)) = found else {
            return unavailable(format!(
                "no online PostgreSQL cluster on port {port}: {listing}"
            ));
        };
        Some(Self {
            pg_ctlcluster,
            version,
            cluster,
        })
    }

    /// `pg_ctlcluster --skip-systemctl-redirect VERSION CLUSTER ACTION`.
    fn control(&self, action: &str) -> Result<(), String> {
        run(
            &self.pg_ctlcluster,
            &[
                "--skip-systemctl-redirect",
                &self.version,
                &self.cluster,
                action,
            ],
        )
    }

    /// Stops the server (fast shutdown: open sessions are terminated, as in a crash of the
    /// connections or a failover). `pg_ctlcluster start` waits until it accepts connections.
    pub async fn stop(self) -> Outage {
        let this = Arc::new(self);
        let stopper = this.clone();
        tokio::task::spawn_blocking(move || stopper.control("stop"))
            .await
            .expect("stop task")
            .expect("stop PostgreSQL");
        let began = Instant::now();
        Outage {
            service: "PostgreSQL",
            start: Arc::new(move || this.control("start")),
            began,
            over: false,
        }
    }
}

/// The local RabbitMQ node behind an `amqp://` URL.
pub struct RabbitMq {
    rabbitmqctl: PathBuf,
    diagnostics: PathBuf,
}

impl RabbitMq {
    /// The node serving `url`, if this machine can restart it.
    pub fn locate(url: &str) -> Option<Self> {
        let Some((host, _)) = host_and_port(url, 5672) else {
            return unavailable(format!("cannot read the host of {url}"));
        };
        if !is_local(&host) {
            return unavailable(format!("RabbitMQ at {host} is not on this machine"));
        }
        let (Some(rabbitmqctl), Some(diagnostics)) =
            (find("rabbitmqctl"), find("rabbitmq-diagnostics"))
        else {
            return unavailable("rabbitmqctl is not installed (Debian rabbitmq-server)".into());
        };
        let node = Self {
            rabbitmqctl,
            diagnostics,
        };
        if let Err(error) = node.check_running() {
            return unavailable(format!("RabbitMQ is not running here: {error}"));
        }
        Some(node)
    }

    fn check_running(&self) -> Result<(), String> {
        run(&self.diagnostics, &["-q", "check_running"])
    }

    /// `start_app`, then waits until the node reports running.
    fn start(&self) -> Result<(), String> {
        run(&self.rabbitmqctl, &["start_app"])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.check_running() {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Stops the RabbitMQ application (the Erlang node stays up, so it starts again in
    /// seconds): every connection is closed and the port stops accepting.
    pub async fn stop(self) -> Outage {
        let this = Arc::new(self);
        let stopper = this.clone();
        tokio::task::spawn_blocking(move || run(&stopper.rabbitmqctl, &["stop_app"]))
            .await
            .expect("stop task")
            .expect("stop RabbitMQ");
        let began = Instant::now();
        Outage {
            service: "RabbitMQ",
            start: Arc::new(move || this.start()),
            began,
            over: false,
        }
    }
}

#[test]
fn reads_hosts_and_ports() {
    assert_eq!(
        host_and_port("postgres://postgres@127.0.0.1:5433/postgres", 5432),
        Some(("127.0.0.1".into(), 5433))
    );
    assert_eq!(
        host_and_port("amqp://guest:guest@localhost/%2f", 5672),
        Some(("localhost".into(), 5672))
    );
}
