//! Which backends a test run has: the variables that switch the PostgreSQL, RabbitMQ and SMTP
//! suites on, the failure under `CI=true` when one is missing, and the once-per-binary notice
//! that a suite did not run (a skipped test still passes, so without it a SQLite-only run could
//! pass for the full one).

/// The environment variable naming a PostgreSQL server for the PostgreSQL suite: a URL of a
/// database the tests may connect to and create databases from, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "TENANTRY_TEST_POSTGRES_URL";

/// The environment variable naming the RabbitMQ server for the broker suite, e.g.
/// `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub const AMQP_URL_VAR: &str = "TENANTRY_TEST_AMQP_URL";

/// Where a test cluster keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file per service.
    Sqlite,
    /// A fresh PostgreSQL database per service.
    Postgres,
}

/// The PostgreSQL server to test against, if configured. Under `CI=true` its absence is fatal.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{POSTGRES_URL_VAR} is not set but CI=true: the PostgreSQL suite must run in CI")
        }
        _ => None,
    }
}

/// The RabbitMQ server to test against, if configured. Under `CI=true` its absence is fatal.
pub fn amqp_url() -> Option<String> {
    match std::env::var(AMQP_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{AMQP_URL_VAR} is not set but CI=true: the RabbitMQ suite must run in CI")
        }
        _ => None,
    }
}

/// A part of the suite that needs a server this machine may not have. Without it, the tests
/// (or the variants of tests) of that part return early and libtest reports them `ok`; so that
/// a run without the server cannot pass for the full one, the first such test of each test
/// binary says on the terminal which part did not run and how to switch it on
/// ([`note_not_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Tests on PostgreSQL: `TENANTRY_TEST_POSTGRES_URL` ([`POSTGRES_URL_VAR`]).
    Postgres,
    /// Tests through RabbitMQ: `TENANTRY_TEST_AMQP_URL` ([`AMQP_URL_VAR`]).
    RabbitMq,
    /// Tests that send e-mail to a real SMTP server: aiosmtpd ([`smtp::available`]).
    Smtp,
    /// Tests in a real browser against a real OpenID provider ([`crate::browser`]).
    Browser,
}

impl Suite {
    /// Every suite, in the order of their notices.
    pub const ALL: [Suite; 4] = [
        Suite::Postgres,
        Suite::RabbitMq,
        Suite::Smtp,
        Suite::Browser,
    ];

    /// The line [`note_not_run`] writes for this suite.
    pub fn notice(self) -> String {
        match self {
            Suite::Postgres => format!(
                "note: the PostgreSQL suite did not run in this test binary; set \
                 {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres to run it"
            ),
            Suite::RabbitMq => format!(
                "note: the RabbitMQ suite did not run in this test binary; set \
                 {AMQP_URL_VAR}=amqp://guest:guest@127.0.0.1:5672/%2f to run it"
            ),
            Suite::Smtp => "note: the SMTP suite did not run in this test binary; \
                            `pip install aiosmtpd` (or set TENANTRY_TEST_PYTHON to a Python that \
                            has it) to run it"
                .to_string(),
            Suite::Browser => "note: the browser suite did not run in this test binary; install \
                               Debian's chromium and chromium-driver and run \
                               `npm ci --prefix tests/oidc` to run it"
                .to_string(),
        }
    }
}

/// Says once per test binary, on the terminal, that tests of `suite` did not run here.
///
/// The line goes straight to the process's stderr: libtest captures only what the `print!`
/// and `eprint!` macros write, so this one is shown even though the skipping tests pass.
pub fn note_not_run(suite: Suite) {
    use std::io::Write;
    static NOTED: [std::sync::Once; 4] = [const { std::sync::Once::new() }; 4];
    NOTED[suite as usize].call_once(|| {
        let _ = writeln!(std::io::stderr(), "{}", suite.notice());
    });
}

/// For a test of the PostgreSQL suite: the server's URL, or `None` — the test does not run
/// here, and [`note_not_run`] says so. Under `CI=true` a missing server is fatal.
pub fn postgres_or_skip() -> Option<String> {
    let url = postgres_url();
    if url.is_none() {
        note_not_run(Suite::Postgres);
    }
    url
}

/// For a test through RabbitMQ: the broker's URL, or `None` — the test does not run here, and
/// [`note_not_run`] says so. Under `CI=true` a missing broker is fatal.
pub fn amqp_or_skip() -> Option<String> {
    let url = amqp_url();
    if url.is_none() {
        note_not_run(Suite::RabbitMq);
    }
    url
}

/// For a test that needs aiosmtpd: whether it can run here; when not, [`note_not_run`] says
/// so. Under `CI=true` a missing aiosmtpd is fatal.
pub fn smtp_or_skip() -> bool {
    let available = crate::smtp::available();
    if !available {
        note_not_run(Suite::Smtp);
    }
    available
}
