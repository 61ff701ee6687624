//! A real browser and a real OpenID provider for the invitation page's tests: Debian's Chromium
//! driven through its ChromeDriver (WebDriver), and the OpenID-certified `oidc-provider` package
//! run by Node.js from `tests/oidc` (installed by `.ci/run` with `npm ci --prefix tests/oidc`).
//! Each test starts its own of both, on free ports, and they stop when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Where the tools were found.
#[derive(Clone, Debug)]
pub struct BrowserTools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    oidc_dir: PathBuf,
}

fn tool(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// The tools, if this machine has them all: Chromium and ChromeDriver (`TENANTRY_TEST_CHROMIUM`,
/// `TENANTRY_TEST_CHROMEDRIVER`, default `/usr/bin/chromium`, `/usr/bin/chromedriver`), Node.js
/// and the installed `tests/oidc`. Without them the browser tests do not run here, and
/// [`crate::note_not_run`] says so; under `CI=true` a missing tool is fatal.
pub fn browser_or_skip() -> Option<BrowserTools> {
    let tools = BrowserTools {
        chromium: tool("TENANTRY_TEST_CHROMIUM", "/usr/bin/chromium"),
        chromedriver: tool("TENANTRY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
        oidc_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc"),
    };
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let missing: Vec<&str> = [
        (tools.chromium.is_file(), "chromium"),
        (tools.chromedriver.is_file(), "chromedriver"),
        (node, "node"),
        (
            tools.oidc_dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules (npm ci --prefix tests/oidc)",
        ),
    ]
    .into_iter()
    .filter_map(|(present, what)| (!present).then_some(what))
    .collect();
    if missing.is_empty() {
        return Some(tools);
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "the browser tests must run in CI, and this machine lacks: {}",
            missing.join(", ")
        );
    }
    crate::note_not_run(crate::Suite::Browser);
    None
}

/// A free port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Reads `child`'s stdout until a line starts with `ready`, for at most 30 s.
async fn wait_for_line(child: &mut tokio::process::Child, ready: &str, what: &str) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with(ready) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "{what} did not start");
    // Keep draining, so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// The OpenID provider of `tests/oidc`, with one confidential client.
#[derive(Debug)]
pub struct OpenIdProvider {
    _child: tokio::process::Child,
    /// Its issuer URL, `http://127.0.0.1:{port}`.
    pub issuer: String,
}

impl OpenIdProvider {
    /// Starts the provider for client `client_id`/`client_secret` redirecting to
    /// `redirect_uri`. Any login name signs in; `bob` gets `sub` `bob` and the verified e-mail
    /// `bob@example.com` (see `tests/oidc/README.md`).
    pub async fn start(
        tools: &BrowserTools,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
    ) -> Self {
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let mut child = tokio::process::Command::new("node")
            .arg(tools.oidc_dir.join("provider.mjs"))
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_ISSUER", &issuer)
            .env("OIDC_CLIENT_ID", client_id)
            .env("OIDC_CLIENT_SECRET", client_secret)
            .env("OIDC_REDIRECT_URI", redirect_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OpenID provider");
        wait_for_line(&mut child, "OIDC provider ready", "the OpenID provider").await;
        Self {
            _child: child,
            issuer,
        }
    }
}

/// ChromeDriver, starting headless Chromium sessions.
#[derive(Debug)]
pub struct WebDriver {
    _child: tokio::process::Child,
    url: String,
    chromium: PathBuf,
}

impl WebDriver {
    /// Starts ChromeDriver on a free port.
    pub async fn start(tools: &BrowserTools) -> Self {
        let port = free_port();
        let mut child = tokio::process::Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        wait_for_line(&mut child, "ChromeDriver was started", "chromedriver").await;
        Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            chromium: tools.chromium.clone(),
        }
    }

    /// A new browser session (its own profile: no cookies) with a phone-sized window.
    pub async fn session(&self) -> fantoccini::Client {
        let profile = std::env::temp_dir().join(format!(
            "tenantry-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": self.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=412,915",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}
