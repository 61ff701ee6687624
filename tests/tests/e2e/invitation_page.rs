//! The invitation page over plain HTTP (the browser test, `invitation_browser`, drives the same
//! page in Chromium with a real OpenID provider): the link's secret leaves the URL at once, the
//! strict headers, the CSRF and origin checks, and a page for every state. The person signs in
//! with the development sign-in, switched on in code for this cluster.

use std::collections::HashMap;

use tenantry_e2e::{invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    GetInvitationRequest, InvitationState, RevokeInvitationRequest,
};
use tenantry_proto::membership::v1::{ListMembersRequest, Role};
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser};

/// A cluster whose invitation page listens on a free port that the e-mail links point to.
pub async fn cluster_with_page(
    configure: impl FnOnce(&mut tenantry_invitation::Config),
) -> (TestCluster, String) {
    let port = tenantry_testkit::browser::free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.invitation.public_url = public_url.clone();
    options.invitation.accept_page_listen = Some(([127, 0, 0, 1], port).into());
    configure(&mut options.invitation);
    (TestCluster::start_with(options).await, public_url)
}

/// A cookie-keeping HTTP client that does not follow redirects, as a browser without
/// JavaScript would use the page.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Seen {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Visitor {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Seen {
        let cookie = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request
            .header("cookie", cookie)
            .send()
            .await
            .expect("the page answers");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        Seen {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Seen {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Seen {
        let body = fields
            .iter()
            .fold(
                url::form_urlencoded::Serializer::new(String::new()),
                |mut form, (key, value)| {
                    form.append_pair(key, value);
                    form
                },
            )
            .finish();
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        self.send(request).await
    }

    /// Opens an e-mail link: the secret must leave the URL at once.
    async fn open_link(&mut self, link: &str) -> Seen {
        let path = link.strip_prefix(&self.base).expect("a link to this page");
        let seen = self.get(path).await;
        assert_eq!(seen.status, 303, "the link redirects");
        let location = seen.headers["location"].to_str().unwrap();
        assert_eq!(location, "/invitations/accept", "the secret left the URL");
        let set_cookie = seen.headers["set-cookie"].to_str().unwrap();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/invitations"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        let token = link.split("token=").nth(1).unwrap();
        assert!(!set_cookie.contains(token), "the cookie is sealed");
        self.get("/invitations/accept").await
    }

    /// The CSRF token in the page's forms.
    fn csrf(seen: &Seen) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = seen.body.find(marker).expect("a form with a CSRF token") + marker.len();
        seen.body[start..][..seen.body[start..].find('"').unwrap()].to_string()
    }

    async fn dev_sign_in(&mut self, page: &Seen, user: &TestUser) -> Seen {
        let csrf = Self::csrf(page);
        let seen = self
            .post(
                "/invitations/dev-sign-in",
                &[
                    ("csrf", &csrf),
                    ("email", &user.email),
                    ("given_name", &user.sub),
                    ("family_name", "Tester"),
                ],
                None,
            )
            .await;
        assert_eq!(seen.status, 303, "{}", seen.body);
        self.get("/invitations/accept").await
    }
}

fn assert_strict_headers(seen: &Seen) {
    let header = |name: &str| {
        seen.headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert!(header("content-security-policy").contains("default-src 'none'"));
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
    assert!(!seen.body.contains("<script"), "no JavaScript");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_answers_every_state_and_refuses_forged_forms() {
    let (cluster, public_url) = cluster_with_page(|config| {
        config.development_sign_in = true;
        config.application_url = Some("https://app.example.com/".into());
    })
    .await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let bob = TestUser::new("bob");
    let invitation = invite(&cluster, alice, &customer.name, &bob.email, Role::Admin)
        .await
        .expect("invite bob");
    let link = cluster.wait_for_mail_files(&bob.email, 1).await[0]
        .accept_link()
        .expect("a link");
    assert!(link.starts_with(&format!("{public_url}/invitations/accept?token=")));

    // Without the link, the page says what to do.
    let mut stranger = Visitor::new(&public_url);
    let seen = stranger.get("/invitations/accept").await;
    assert_eq!(seen.status, 400);
    assert!(seen.body.contains("Open the link"));
    assert_strict_headers(&seen);
    assert_eq!(stranger.get("/nothing-here").await.status, 404);

    // Bob opens the link and signs in.
    let mut browser = Visitor::new(&public_url);
    let page = browser.open_link(&link).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Development sign-in"));
    assert_strict_headers(&page);
    let page = browser.dev_sign_in(&page, &bob).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        customer.display_name.as_str(),
        "Administrator",
        "matches the invitation",
        "UTC",
        &bob.email,
    ] {
        assert!(page.body.contains(shown), "the page shows {shown}");
    }
    let csrf = Visitor::csrf(&page);

    // Forged answers change nothing: no CSRF token, a wrong one, another origin.
    for (fields, origin) in [
        (vec![], None),
        (vec![("csrf", "forged")], None),
        (vec![("csrf", csrf.as_str())], Some("https://evil.example")),
    ] {
        let seen = browser.post("/invitations/accept", &fields, origin).await;
        assert_eq!(seen.status, 403, "{}", seen.body);
        assert!(seen.body.contains("This form has expired"));
    }
    let state = |name: String| {
        let mut invitations = cluster.invitation_as(alice);
        async move {
            invitations
                .get_invitation(GetInvitationRequest { name })
                .await
                .unwrap()
                .into_inner()
                .invitation
                .unwrap()
                .state()
        }
    };
    assert_eq!(
        state(invitation.name.clone()).await,
        InvitationState::Pending
    );

    // Accept.
    let seen = browser
        .post("/invitations/accept", &[("csrf", &csrf)], Some(&public_url))
        .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(
        seen.body
            .contains(&format!("Welcome to {}", customer.display_name))
    );
    assert!(seen.body.contains("https://app.example.com/"));
    assert_eq!(
        state(invitation.name.clone()).await,
        InvitationState::Accepted
    );
    let members = cluster
        .membership_as(alice)
        .list_members(ListMembersRequest {
            parent: customer.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    let member = members
        .iter()
        .find(|member| member.user == format!("users/{}", bob.email))
        .expect("bob is a member, under his e-mail as user id");
    assert_eq!(member.email, bob.email);
    assert_eq!(member.role(), Role::Admin);

    // The used link, opened again, explains itself.
    let mut again = Visitor::new(&public_url);
    let page = again.open_link(&link).await;
    let page = again.dev_sign_in(&page, &bob).await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("already used"));

    // Carol's invitation: someone else signs in — nothing can be answered; then it is revoked.
    let carol = TestUser::new("carol");
    let carols = invite(
        &cluster,
        alice,
        &customer.name,
        &carol.email,
        Role::Employee,
    )
    .await
    .expect("invite carol");
    let carol_link = cluster.wait_for_mail_files(&carol.email, 1).await[0]
        .accept_link()
        .unwrap();
    let mut mallory_browser = Visitor::new(&public_url);
    let page = mallory_browser.open_link(&carol_link).await;
    // The link's own CSRF token (the page for another address offers no answer form).
    let csrf = Visitor::csrf(&page);
    let page = mallory_browser
        .dev_sign_in(&page, &TestUser::new("mallory"))
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("another e-mail address"));
    assert!(!page.body.contains("action=\"/invitations/accept\""));
    for path in ["/invitations/accept", "/invitations/decline"] {
        let seen = mallory_browser.post(path, &[("csrf", &csrf)], None).await;
        assert_eq!(seen.status, 303, "refused, back to the page that explains");
    }
    assert_eq!(state(carols.name.clone()).await, InvitationState::Pending);
    cluster
        .invitation_as(alice)
        .revoke_invitation(RevokeInvitationRequest {
            name: carols.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let page = mallory_browser.get("/invitations/accept").await;
    assert!(page.body.contains("withdrawn"), "{}", page.body);

    // Dan declines his.
    let dan = TestUser::new("dan");
    let dans = invite(&cluster, alice, &customer.name, &dan.email, Role::Employee)
        .await
        .expect("invite dan");
    let dan_link = cluster.wait_for_mail_files(&dan.email, 1).await[0]
        .accept_link()
        .unwrap();
    let mut dan_browser = Visitor::new(&public_url);
    let page = dan_browser.open_link(&dan_link).await;
    let page = dan_browser.dev_sign_in(&page, &dan).await;
    let csrf = Visitor::csrf(&page);
    let seen = dan_browser
        .post("/invitations/decline", &[("csrf", &csrf)], None)
        .await;
    assert_eq!(seen.status, 200);
    assert!(seen.body.contains("Invitation declined"));
    assert_eq!(state(dans.name.clone()).await, InvitationState::Declined);

    // A damaged link and a bad development sign-in are explained.
    let seen = Visitor::new(&public_url)
        .get("/invitations/accept?token=")
        .await;
    assert_eq!(seen.status, 400);
    let mut typo = Visitor::new(&public_url);
    let page = typo
        .open_link(&format!("{public_url}/invitations/accept?token=nope"))
        .await;
    let seen = typo
        .post(
            "/invitations/dev-sign-in",
            &[
                ("csrf", &Visitor::csrf(&page)),
                ("email", "jane..doe@example.com"),
            ],
            None,
        )
        .await;
    assert_eq!(seen.status, 400);
    assert!(seen.body.contains("E-mail address"));
    let page = typo
        .post(
            "/invitations/dev-sign-in",
            &[
                ("csrf", &Visitor::csrf(&page)),
                ("email", "jane@example.com"),
            ],
            None,
        )
        .await;
    assert_eq!(page.status, 303);
    let seen = typo.get("/invitations/accept").await;
    assert_eq!(seen.status, 404);
    assert!(seen.body.contains("This link does not work"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_openid_provider_and_no_development_secret_there_is_no_development_sign_in() {
    // With an OpenID provider configured (not reachable here), the development form is absent
    // and its endpoint is not found.
    let (cluster, public_url) = cluster_with_page(|config| {
        config.oidc_issuer_url = Some("http://127.0.0.1:9/".into());
        config.oidc_client_id = Some("tenantry".into());
    })
    .await;
    let mut browser = Visitor::new(&public_url);
    let page = browser
        .open_link(&format!("{public_url}/invitations/accept?token=whatever"))
        .await;
    assert!(!page.body.contains("Development sign-in"));
    assert!(page.body.contains("href=\"/invitations/sign-in\""));
    let seen = browser
        .post(
            "/invitations/dev-sign-in",
            &[
                ("csrf", &Visitor::csrf_or_empty(&page)),
                ("email", "x@example.com"),
            ],
            None,
        )
        .await;
    assert_eq!(seen.status, 404);
    // The provider is down: a clear page, not a bare error.
    let seen = browser.get("/invitations/sign-in").await;
    assert_eq!(seen.status, 503);
    assert!(seen.body.contains("Sign-in failed"));
    cluster.stop().await;
}

impl Visitor {
    fn csrf_or_empty(seen: &Seen) -> String {
        if seen.body.contains("name=\"csrf\"") {
            Self::csrf(seen)
        } else {
            String::new()
        }
    }
}
