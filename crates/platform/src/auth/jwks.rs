//! The identity provider's public keys, from its JWKS URL.
//!
//! Fetched on first use, then **on a schedule**: every `TENANTRY_JWKS_REFRESH_SECONDS` (60 s by
//! default) after the latest fetch, each wait jittered by ±10 % ([`JITTER`]) so replicas do not
//! call the provider in lockstep. The schedule is what bounds how long a key the provider removed
//! is still accepted: every replica refuses it within one interval (+10 %, + the fetch), whatever
//! its callers do. Without it a replica whose callers only ever used known keys fetched again only
//! once its keys were 600 s old, and accepted a removed key that long, while replicas that had
//! just fetched for an unknown key id refused it. A task started on first use does it (so
//! [`JwksCache::new`] needs no runtime); it holds only a weak reference and is aborted when the
//! cache is dropped.
//!
//! Also fetched when a token names an unknown key id (key rotation), at most every
//! [`JWKS_MIN_REFRESH_INTERVAL`] once keys were fetched (counted apart from the scheduled
//! fetches, which must not delay a new key), so forged key ids cannot make us hammer the
//! provider. A failed fetch keeps the keys fetched before (a provider briefly down must not
//! lock everyone out) and the schedule tries again at its next tick. Keys not fetched for
//! [`STALE_AFTER_INTERVALS`] intervals are stale: tokens verified with them are no longer served
//! from the token cache but verified again (still against the old keys while the provider is
//! down), so an outage of a couple of intervals costs nothing, and a longer one only the caching.
//!
//! When a fetch shows that a key id we had is gone or its key changed (the provider revoked it),
//! the cache of verified tokens is emptied, so tokens signed with it are verified again, and
//! refused, on their next use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::RwLock;
use tokio::task::AbortHandle;

use super::cache::TokenCache;
use crate::error::{ApiError, ErrorChain};

/// Shortest time between two fetches prompted by tokens (an unknown key id, stale keys), once
/// keys were fetched; the schedule does not wait for it.
const JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Keys not fetched for this many refresh intervals are stale (see [`JwksCache::is_fresh`]).
const STALE_AFTER_INTERVALS: u32 = 3;
/// Each wait of the schedule is the refresh interval times a factor drawn from 1 ± this.
const JITTER: f64 = 0.1;
/// Shortest refresh interval, whatever is configured: a guard against a zero.
const SHORTEST_REFRESH_INTERVAL: Duration = Duration::from_millis(10);

/// The identity provider's keys: fetched on first use, on a schedule, and on an unknown key id.
pub(super) struct JwksCache {
    inner: Arc<Inner>,
    /// The scheduled refresh, once started (by the first [`JwksCache::key`]).
    refresher: Mutex<Option<AbortHandle>>,
}

/// What the scheduled refresh shares with the cache.
struct Inner {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (Jwk, DecodingKey)>>,
    /// When the keys were last fetched: milliseconds since `started`, plus one; 0 before the first
    /// fetch. Written under the `keys` write lock, read without it by cached-token look-ups.
    fetched_at: AtomicU64,
    /// When the last fetch, successful or not, began (same encoding).
    attempted_at: AtomicU64,
    /// When the last fetch a token asked for (an unknown key id, stale keys) began: those are
    /// limited to one per `min_refresh_interval` on their own, so the scheduled fetches never
    /// use up the budget and a new key is fetched as soon as a token names it.
    demanded_at: AtomicU64,
    started: Instant,
    /// Held by whoever fetches, so there is one fetch at a time and readers of the keys are
    /// never held up by a slow provider.
    fetching: tokio::sync::Mutex<()>,
    min_refresh_interval: Duration,
    /// How often the keys are fetched on schedule.
    refresh_interval: Duration,
    /// Keys older than this are stale.
    max_age: Duration,
    /// Verified tokens, emptied when a key is revoked.
    tokens: Arc<TokenCache>,
}

impl JwksCache {
    /// The keys at `url`, fetched again every `refresh_interval` (jittered) once used; a removed
    /// key empties `tokens`.
    pub(super) fn new(url: String, tokens: Arc<TokenCache>, refresh_interval: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let refresh_interval = refresh_interval.max(SHORTEST_REFRESH_INTERVAL);
        Self {
            inner: Arc::new(Inner {
                url,
                http,
                keys: RwLock::new(HashMap::new()),
                fetched_at: AtomicU64::new(0),
                attempted_at: AtomicU64::new(0),
                demanded_at: AtomicU64::new(0),
                started: Instant::now(),
                fetching: tokio::sync::Mutex::new(()),
                min_refresh_interval: JWKS_MIN_REFRESH_INTERVAL,
                refresh_interval,
                max_age: refresh_interval.saturating_mul(STALE_AFTER_INTERVALS),
                tokens,
            }),
            refresher: Mutex::new(None),
        }
    }

    /// The settings, for tests to change before the first use.
    #[cfg(test)]
    fn tune(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("tuned before the first use")
    }

    /// Whether the keys were fetched within the maximum age: tokens verified with them may be
    /// served from the token cache. Lock-free.
    pub(super) fn is_fresh(&self) -> bool {
        self.inner.is_fresh()
    }

    /// The key with id `kid`: UNAUTHENTICATED for an unknown one, UNAVAILABLE when no keys could
    /// be fetched yet. Starts the scheduled refresh (again, if its runtime went away).
    pub(super) async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        self.start_refresher();
        self.inner.key(kid).await
    }

    fn start_refresher(&self) {
        let mut refresher = self
            .refresher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if refresher.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(refresh_on_schedule(Arc::downgrade(&self.inner)));
            *refresher = Some(task.abort_handle());
        }
    }
}

impl Drop for JwksCache {
    fn drop(&mut self) {
        let refresher = self
            .refresher
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = refresher.take() {
            task.abort();
        }
    }
}

/// Fetches the keys every refresh interval (jittered) after the latest fetch, whoever made it,
/// until the cache is gone. A failure keeps the keys and waits for the next tick.
async fn refresh_on_schedule(cache: Weak<Inner>) {
    let mut next_wait = None;
    loop {
        let Some(inner) = cache.upgrade() else {
            return;
        };
        let wait = *next_wait.get_or_insert_with(|| jittered(inner.refresh_interval));
        let due = |inner: &Inner| {
            inner
                .since(&inner.attempted_at)
                .is_none_or(|since| since >= wait)
        };
        if !due(&inner) {
            let since = inner.since(&inner.attempted_at).unwrap_or_default();
            drop(inner);
            tokio::time::sleep(wait.saturating_sub(since)).await;
            continue;
        }
        let fetching = inner.fetching.lock().await;
        // A token may have made someone fetch meanwhile: then wait from that fetch.
        if !due(&inner) {
            continue;
        }
        if let Err(error) = inner.fetch_and_replace().await {
            tracing::warn!(
                url = %inner.url,
                error = %ErrorChain(&error),
                retry_in_seconds = inner.refresh_interval.as_secs_f64(),
                "cannot refresh the JWKS: keeping the keys fetched before"
            );
        }
        drop(fetching);
        next_wait = None;
    }
}

/// `interval` times a factor drawn from 1 ± [`JITTER`].
fn jittered(interval: Duration) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * crate::time::random_fraction();
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

impl Inner {
    /// How long ago `stamp` was set; `None` if it never was.
    fn since(&self, stamp: &AtomicU64) -> Option<Duration> {
        match stamp.load(Ordering::SeqCst) {
            0 => None,
            at => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    /// Sets `stamp` to now.
    fn stamp(&self, stamp: &AtomicU64) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        stamp.store(millis + 1, Ordering::SeqCst);
    }

    fn is_fresh(&self) -> bool {
        self.since(&self.fetched_at)
            .is_some_and(|age| age < self.max_age)
    }

    /// The key `kid` of fresh keys, if there is one.
    async fn fresh_key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        keys.get(kid)
            .filter(|_| self.is_fresh())
            .map(|(_, key)| key.clone())
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        if let Some(key) = self.fresh_key(kid).await {
            return Ok(key);
        }
        let _fetching = self.fetching.lock().await;
        // Someone may have fetched while we waited.
        if let Some(key) = self.fresh_key(kid).await {
            return Ok(key);
        }
        let never_fetched = self.since(&self.fetched_at).is_none();
        let may_fetch = never_fetched
            || self
                .since(&self.demanded_at)
                .is_none_or(|since| since >= self.min_refresh_interval);
        if may_fetch {
            self.stamp(&self.demanded_at);
        }
        if may_fetch && let Err(error) = self.fetch_and_replace().await {
            tracing::warn!(url = %self.url, error = %ErrorChain(&error), "cannot refresh the JWKS");
            if never_fetched {
                return Err(ApiError::unavailable(
                    "the identity provider's keys cannot be fetched",
                ));
            }
        }
        self.keys
            .read()
            .await
            .get(kid)
            .map(|(_, key)| key.clone())
            .ok_or_else(|| ApiError::unauthenticated("token signed by an unknown key"))
    }

    /// Fetches the keys and puts them in place of the old ones, emptying the token cache when one
    /// of those is gone or changed; on failure the old keys stay. The caller holds `fetching`.
    async fn fetch_and_replace(&self) -> Result<(), reqwest::Error> {
        self.stamp(&self.attempted_at);
        let fetched = self.fetch().await?;
        let mut keys = self.keys.write().await;
        let revoked = keys
            .iter()
            .any(|(kid, (jwk, _))| fetched.get(kid).is_none_or(|(new, _)| new != jwk));
        *keys = fetched;
        self.stamp(&self.fetched_at);
        if revoked {
            self.tokens.clear();
            tracing::debug!(
                url = %self.url,
                "a signing key left the JWKS or changed: cached tokens are verified again"
            );
        }
        Ok(())
    }

    async fn fetch(&self) -> Result<HashMap<String, (Jwk, DecodingKey)>, reqwest::Error> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(set
            .keys
            .into_iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((kid, (jwk, key)))
            })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::auth::{Authenticator, DevTokenClaims, Principal, unix_now};
    use crate::config::AuthConfig;

    /// A P-256 key made for this test only (`openssl ecparam -name prime256v1 -genkey`).
    pub(crate) const TEST_EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9BIf7YdLOIgwQIup
UOSNYGv8Wqqg0DoVdTboIYOFpzOhRANCAATR93mK//m+AH7oki/Zbibe7RYGPo10
QupCRacIPy+g2titizsKj1Jq44HzmCutGcsrKiQ6hxiche9dL7Sraf9B
-----END PRIVATE KEY-----
";
    pub(crate) const TEST_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"idp-key-1","use":"sig","alg":"ES256","x":"0fd5iv_5vgB-6JIv2W4m3u0WBj6NdELqQkWnCD8voNo","y":"2K2LOwqPUmrjgfOYK60ZyysqJDqHGJyF710vtKtp_0E"}]}"#;

    /// Serves `body` as JSON to every HTTP request; returns the URL and a request counter.
    pub(crate) async fn serve_jwks(body: &'static str) -> (String, Arc<AtomicUsize>) {
        let server = JwksServer::start(body).await;
        (server.url, server.hits)
    }

    /// A JWKS endpoint whose document can be changed, or taken away (503), while it runs.
    struct JwksServer {
        url: String,
        hits: Arc<AtomicUsize>,
        body: Arc<Mutex<Option<String>>>,
    }

    impl JwksServer {
        async fn start(body: &str) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let served = Arc::new(Mutex::new(Some(body.to_string())));
            let (counter, document) = (hits.clone(), served.clone());
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut buffer = [0u8; 4096];
                    let _ = socket.read(&mut buffer).await;
                    let body = document.lock().unwrap().clone();
                    let response = match body {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                }
            });
            Self {
                url,
                hits,
                body: served,
            }
        }

        /// Serves `body` from now on; `None` answers 503.
        fn serve(&self, body: Option<&str>) {
            *self.body.lock().unwrap() = body.map(str::to_string);
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// An authenticator that trusts only the JWKS at `url`.
    fn jwks_authenticator(url: &str) -> Authenticator {
        Authenticator::new(AuthConfig {
            jwt_secret: None,
            jwks_url: Some(url.to_string()),
            ..AuthConfig::with_secrets("unused", "internal")
        })
        .unwrap()
    }

    fn verifications(auth: &Authenticator) -> usize {
        auth.verifications.load(Ordering::SeqCst)
    }

    fn es256_token(kid: &str, aud: &str) -> String {
        es256_token_expiring(kid, aud, unix_now() + 600)
    }

    fn es256_token_expiring(kid: &str, aud: &str, exp: u64) -> String {
        let key = EncodingKey::from_ec_pem(TEST_EC_KEY.as_bytes()).unwrap();
        es256_token_signed(&key, kid, aud, exp)
    }

    fn es256_token_signed(key: &EncodingKey, kid: &str, aud: &str, exp: u64) -> String {
        let now = unix_now();
        let claims = DevTokenClaims {
            sub: "carol".into(),
            email: Some("carol@idp.example".into()),
            email_verified: Some(true),
            given_name: Some("Carol".into()),
            family_name: None,
            roles: vec![],
            iss: "tenantry".into(),
            aud: aud.into(),
            exp,
            iat: now,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    /// The JWK of [`TEST_EC_KEY`] (`idp-key-1`), as JSON.
    fn test_jwk() -> String {
        let set: serde_json::Value = serde_json::from_str(TEST_JWKS).unwrap();
        set["keys"][0].to_string()
    }

    /// A P-256 key pair made for one test: its signing key, and its public key as a JWK named
    /// `kid`.
    fn generated_ec_key(kid: &str) -> (EncodingKey, String) {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pair = rcgen::KeyPair::generate().unwrap();
        // An uncompressed point: 0x04, then x and y.
        let (x, y) = pair.public_key_raw()[1..].split_at(32);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        (key, jwk.to_string())
    }

    /// A JWKS document of `jwks` (JSON objects).
    fn jwks_of(jwks: &[&str]) -> String {
        format!(r#"{{"keys":[{}]}}"#, jwks.join(","))
    }

    /// How long after `since` `auth` first refuses `token` (UNAUTHENTICATED), asking every 50 ms;
    /// `None` if it still accepts it after 10 s.
    async fn time_until_refused(
        auth: &Authenticator,
        token: &str,
        since: Instant,
    ) -> Option<Duration> {
        loop {
            match auth.verify(token).await {
                Err(error) if error.code() == tonic::Code::Unauthenticated => {
                    return Some(since.elapsed());
                }
                Err(error) => panic!("unexpected refusal: {error}"),
                Ok(_) if since.elapsed() > Duration::from_secs(10) => return None,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    #[tokio::test]
    async fn a_key_removed_from_the_jwks_is_refused_by_every_replica_within_the_refresh_interval() {
        let (k2, k2_jwk) = generated_ec_key("idp-key-2");
        let server = JwksServer::start(&jwks_of(&[&test_jwk(), &k2_jwk])).await;
        let interval_seconds = 1;
        let replica = || {
            Authenticator::new(AuthConfig {
                jwt_secret: None,
                jwks_url: Some(server.url.clone()),
                jwks_refresh_seconds: interval_seconds,
                ..AuthConfig::with_secrets("unused", "internal")
            })
            .unwrap()
        };
        let (a, b) = (replica(), replica());
        let exp = unix_now() + 600;
        let k1_token = es256_token("idp-key-1", "tenantry");
        let k2_token = es256_token_signed(&k2, "idp-key-2", "tenantry", exp);
        // A verifies a K1 token once (and from then on serves it from its token cache). B, a
        // little later (so the two schedules are out of step), verifies it and a K2 token.
        a.verify(&k1_token).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.verify(&k1_token).await.unwrap();
        b.verify(&k2_token).await.unwrap();
        // The provider removes K1.
        server.serve(Some(&jwks_of(&[&k2_jwk])));
        let removed = Instant::now();
        let (a_took, b_took) = tokio::join!(
            time_until_refused(&a, &k1_token, removed),
            time_until_refused(&b, &k1_token, removed),
        );
        let bound = Duration::from_secs(interval_seconds).mul_f64(1.1) + Duration::from_secs(1);
        let shown = |took: Option<Duration>| {
            took.map_or("still accepted after 10 s".to_string(), |took| {
                format!("{:.3} s", took.as_secs_f64())
            })
        };
        println!(
            "refresh interval {interval_seconds} s: the removed key was refused by replica A after \
             {}, by replica B after {} (bound {:.3} s)",
            shown(a_took),
            shown(b_took),
            bound.as_secs_f64()
        );
        for (replica, took) in [("A", a_took), ("B", b_took)] {
            let took =
                took.unwrap_or_else(|| panic!("replica {replica} still accepts K1 after 10 s"));
            assert!(
                took <= bound,
                "replica {replica} took {took:?}, more than {bound:?}"
            );
        }
        // K2 stays accepted everywhere.
        for auth in [&a, &b] {
            auth.verify(&k2_token).await.unwrap();
        }
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Waits (at most 10 s) until `server` has been asked `hits` times in all.
    async fn wait_for_hits(server: &JwksServer, hits: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.hits() < hits {
            assert!(
                Instant::now() < deadline,
                "{} hits, not {hits}",
                server.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The default current-thread runtime runs the refresh task on this thread, where the
    // captured log is the default subscriber.
    #[tokio::test]
    async fn a_failed_scheduled_refresh_keeps_the_keys_and_logs_why() {
        let log = Captured::default();
        let writer = log.clone();
        let _log = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        );
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        let jwks = auth.jwks.as_mut().unwrap().tune();
        jwks.refresh_interval = Duration::from_millis(200);
        jwks.max_age = Duration::from_millis(600);
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        // Scheduled refreshes happen without any token.
        wait_for_hits(&server, 3).await;
        assert_eq!(verifications(&auth), 1);
        // The provider goes down for longer than the keys' maximum age.
        server.serve(None);
        let hits = server.hits();
        wait_for_hits(&server, hits + 4).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while auth.jwks.as_ref().unwrap().is_fresh() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the keys never went stale while the provider was down"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = log.text();
        assert!(
            text.contains("WARN")
                && text.contains("cannot refresh the JWKS: keeping the keys fetched before")
                && text.contains("503"),
            "{text}"
        );
        // The old keys still verify tokens: the cached one (verified again, the keys being
        // stale) and a new one.
        auth.verify(&token).await.unwrap();
        let other = es256_token_expiring("idp-key-1", "tenantry", unix_now() + 900);
        auth.verify(&other).await.unwrap();
        assert_eq!(verifications(&auth), 3);
        // The provider answers again, without the key: the next tick notices.
        server.serve(Some(r#"{"keys":[]}"#));
        let took = time_until_refused(&auth, &token, Instant::now()).await;
        assert!(
            took.is_some_and(|took| took < Duration::from_secs(2)),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn the_scheduled_refresh_ends_with_the_cache() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.jwks.as_mut().unwrap().tune().refresh_interval = Duration::from_millis(50);
        auth.verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap();
        wait_for_hits(&server, 3).await;
        drop(auth);
        let hits = server.hits();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(server.hits() <= hits + 1, "{} after {hits}", server.hits());
    }

    #[test]
    fn the_refresh_interval_is_a_bounded_setting() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            auth: AuthConfig,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["tenantry"].iter().chain(args)).map(|cli| cli.auth)
        };
        assert_eq!(parse(&[]).unwrap().jwks_refresh_seconds, 60);
        assert_eq!(
            AuthConfig::with_secrets("a", "b").jwks_refresh_seconds,
            crate::auth::DEFAULT_JWKS_REFRESH_SECONDS
        );
        for ok in ["5", "3600"] {
            let config = parse(&["--jwks-refresh-seconds", ok]).unwrap();
            assert_eq!(config.jwks_refresh_seconds.to_string(), ok);
        }
        for refused in ["4", "0", "3601", "soon"] {
            let error = parse(&["--jwks-refresh-seconds", refused])
                .err()
                .unwrap_or_else(|| panic!("{refused} accepted"))
                .to_string();
            assert!(error.contains("--jwks-refresh-seconds"), "{error}");
        }
        assert!(format!("{:?}", parse(&[]).unwrap()).contains("jwks_refresh_seconds: 60"));
    }

    #[tokio::test]
    async fn verifies_provider_tokens_through_the_jwks_url() {
        let (url, hits) = serve_jwks(TEST_JWKS).await;
        let config = AuthConfig {
            jwt_secret: None,
            jwks_url: Some(url),
            ..AuthConfig::with_secrets("unused", "internal")
        };
        let auth = Authenticator::new(config).unwrap();
        let Principal::User(user) = auth
            .verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap()
        else {
            panic!("expected a user");
        };
        assert_eq!(user.sub, "carol");
        assert_eq!(user.given_name.as_deref(), Some("Carol"));
        // Cached: a second token costs no fetch.
        auth.verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Wrong audience and unknown key ids are refused; the unknown kid does not refetch
        // within the minimum refresh interval.
        let error = auth
            .verify(&es256_token("idp-key-1", "other"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        let error = auth
            .verify(&es256_token("rotated-away", "tenantry"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // HS256 tokens are not accepted when only a JWKS is configured.
        let hs = crate::auth::mint_user_token(
            "unused",
            &DevTokenClaims {
                sub: "mallory".into(),
                email: None,
                email_verified: None,
                given_name: None,
                family_name: None,
                roles: vec![],
                iss: "tenantry".into(),
                aud: "tenantry".into(),
                exp: unix_now() + 600,
                iat: unix_now(),
            },
        )
        .unwrap();
        assert!(auth.verify(&hs).await.is_err());
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_unavailable_not_unauthenticated() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        drop(listener);
        let config = AuthConfig {
            jwt_secret: None,
            jwks_url: Some(url),
            ..AuthConfig::with_secrets("unused", "internal")
        };
        let auth = Authenticator::new(config).unwrap();
        let error = auth
            .verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.leeway = 0;
        let expires = unix_now() + 2;
        let token = es256_token_expiring("idp-key-1", "tenantry", expires);
        let first = auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 1);
        // The provider goes away: the token verified once is still accepted, without a check.
        server.serve(None);
        for _ in 0..3 {
            assert_eq!(auth.verify(&token).await.unwrap(), first);
        }
        assert_eq!(verifications(&auth), 1);
        assert_eq!(server.hits(), 1);
        // Once it expires, it is verified again, and refused.
        while unix_now() <= expires {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert!(error.to_string().contains("expired"), "{error}");
        assert_eq!(verifications(&auth), 2);
    }

    #[tokio::test]
    async fn a_key_gone_from_the_jwks_empties_the_cache_on_an_unknown_key_id() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.jwks.as_mut().unwrap().tune().min_refresh_interval = Duration::ZERO;
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        auth.verify(&token).await.unwrap();
        assert_eq!((verifications(&auth), server.hits()), (1, 1));
        assert_eq!(auth.tokens.len(), 1);
        // The provider revokes the key. Until the JWKS is fetched again the token stays
        // accepted (as it did before there was a token cache: the key was cached).
        server.serve(Some(r#"{"keys":[]}"#));
        auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 1);
        // A token with a key id we do not know makes us fetch the JWKS: idp-key-1 is gone.
        let error = auth
            .verify(&es256_token("idp-key-2", "tenantry"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(server.hits(), 2);
        assert_eq!(auth.tokens.len(), 0);
        // The token is verified again and refused.
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(verifications(&auth), 3);
    }

    #[tokio::test]
    async fn cached_tokens_are_checked_again_once_the_jwks_is_stale() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        let jwks = auth.jwks.as_mut().unwrap().tune();
        jwks.min_refresh_interval = Duration::ZERO;
        jwks.max_age = Duration::from_millis(300);
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        auth.verify(&token).await.unwrap();
        assert_eq!((verifications(&auth), server.hits()), (1, 1));
        // Stale keys: the cached token is verified again, which fetches the JWKS; unchanged keys
        // keep the cache and the token.
        tokio::time::sleep(Duration::from_millis(400)).await;
        auth.verify(&token).await.unwrap();
        assert_eq!((verifications(&auth), server.hits()), (2, 2));
        auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 2);
        // Revoked while cached: refused once the keys are stale, with no other token's help.
        server.serve(Some(r#"{"keys":[]}"#));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.tokens.len(), 0);
    }

    #[tokio::test]
    async fn a_changed_key_under_the_same_id_empties_the_cache() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.jwks.as_mut().unwrap().tune().min_refresh_interval = Duration::ZERO;
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        // Same key id, another key (the test key's `x` and `y` swapped: not our key).
        server.serve(Some(
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"idp-key-1","use":"sig","alg":"ES256","x":"2K2LOwqPUmrjgfOYK60ZyysqJDqHGJyF710vtKtp_0E","y":"0fd5iv_5vgB-6JIv2W4m3u0WBj6NdELqQkWnCD8voNo"}]}"#,
        ));
        let _ = auth.verify(&es256_token("idp-key-2", "tenantry")).await;
        assert_eq!(server.hits(), 2);
        assert_eq!(auth.tokens.len(), 0);
        assert!(auth.verify(&token).await.is_err());
    }
}
