//! The invitation, end to end for a person, in a real browser: the link from the e-mail that a
//! real SMTP server received, opened in headless Chromium; sign-in at a real OpenID provider
//! (`oidc-provider`, OpenID-certified, from `tests/oidc`); the page; Accept, and the membership
//! seen through gRPC; Decline; a sign-in with another e-mail that creates no member; a POST
//! without the CSRF token that is refused; and the closed states. Each page state is saved as
//! a screenshot in `TENANTRY_SCREENSHOTS` (default `target/screenshots`; the README's are
//! regenerated with `TENANTRY_SCREENSHOTS=docs/screenshots`).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use tenantry_e2e::{invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    CreateInvitationRequest, GetInvitationRequest, InvitationState, RevokeInvitationRequest,
};
use tenantry_proto::membership::v1::{ListMembersRequest, Member, Role};
use tenantry_testkit::browser::{OpenIdProvider, WebDriver, browser_or_skip, free_port};
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser, smtp_or_skip};

const CLIENT_ID: &str = "tenantry-invitation-page";
const CLIENT_SECRET: &str = "browser-test-client-secret";
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("TENANTRY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"));
    let dir = if dir.is_relative() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir)
    } else {
        dir
    };
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("save it");
}

/// Retries `read` while the page is between two documents (elements go stale mid-load).
async fn settled<T>(mut read: impl AsyncFnMut() -> Result<T, fantoccini::error::CmdError>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match read().await {
            Ok(value) => return value,
            Err(error) if tokio::time::Instant::now() > deadline => panic!("{error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The page's text (what a person reads).
async fn text(browser: &Client) -> String {
    settled(async || browser.find(Locator::Css("body")).await?.text().await).await
}

async fn heading(browser: &Client) -> String {
    settled(async || browser.find(Locator::Css("h1")).await?.text().await).await
}

/// Waits (10 s at most) until the page's heading is `expected`.
async fn expect_heading(browser: &Client, expected: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = heading(browser).await;
        if seen == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected the page {expected:?}, saw {seen:?}: {}",
            text(browser).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css}: {error}"))
        .click()
        .await
        .unwrap_or_else(|error| panic!("click {css}: {error}"));
}

/// Fills the provider's own login form (any password) as `login`.
async fn provider_login(browser: &Client, login: &str) {
    browser
        .wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .expect("the provider's login form")
        .send_keys(login)
        .await
        .unwrap();
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("any password")
        .await
        .unwrap();
    click(browser, "button[type=submit]").await;
}

/// Opens `link` and signs in at the provider as `login`; returns on the invitation page.
async fn open_and_sign_in(browser: &Client, link: &str, login: &str, shoot: Option<&str>) {
    browser.goto(link).await.expect("open the link");
    let url = browser.current_url().await.unwrap();
    assert!(
        !url.as_str().contains("token="),
        "the secret left the address bar: {url}"
    );
    expect_heading(browser, "You have been invited").await;
    if let Some(name) = shoot {
        screenshot(browser, name).await;
    }
    click(browser, "a[href='/invitations/sign-in']").await;
    provider_login(browser, login).await;
    browser
        .wait()
        .for_element(Locator::Css(".who"))
        .await
        .expect("back on the invitation page, signed in");
}

async fn members(cluster: &TestCluster, viewer: &TestUser, account: &str) -> Vec<Member> {
    cluster
        .membership_as(viewer)
        .list_members(ListMembersRequest {
            parent: account.to_string(),
            ..Default::default()
        })
        .await
        .expect("list members")
        .into_inner()
        .members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_accepts_and_declines_in_a_real_browser() {
    let Some(tools) = browser_or_skip() else {
        return;
    };
    if !smtp_or_skip() {
        return;
    }
    let smtp = SmtpServer::start().await;
    let page_port = free_port();
    let public_url = format!("http://127.0.0.1:{page_port}");
    let provider = OpenIdProvider::start(
        &tools,
        CLIENT_ID,
        CLIENT_SECRET,
        &format!("{public_url}/invitations/callback"),
    )
    .await;
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.invitation.public_url = public_url.clone();
    options.invitation.accept_page_listen = Some(([127, 0, 0, 1], page_port).into());
    options.mail.smtp_url = Some(smtp.url());
    options.invitation.oidc_issuer_url = Some(provider.issuer.clone());
    options.invitation.oidc_client_id = Some(CLIENT_ID.into());
    options.invitation.oidc_client_secret = Some(CLIENT_SECRET.into());
    options.invitation.application_url = Some("https://app.example.com/".into());
    let cluster = TestCluster::start_with(options).await;
    let webdriver = WebDriver::start(&tools).await;

    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let link_for = async |email: &str| {
        smtp.wait_for(email, 1, MAIL_TIMEOUT).await[0]
            .accept_link()
            .expect("an accept link in the e-mail")
    };

    let state = async |name: &str| {
        cluster
            .invitation_as(alice)
            .get_invitation(GetInvitationRequest {
                name: name.to_string(),
            })
            .await
            .expect("get")
            .into_inner()
            .invitation
            .expect("invitation")
    };
    // Bob accepts.
    let bob = invite(
        &cluster,
        alice,
        &customer.name,
        "bob@example.com",
        Role::Admin,
    )
    .await
    .expect("invite bob");
    let link = link_for("bob@example.com").await;
    assert!(link.starts_with(&format!("{public_url}/invitations/accept?token=")));
    let browser = webdriver.session().await;
    open_and_sign_in(&browser, &link, "bob", Some("invitation-sign-in")).await;
    expect_heading(&browser, &format!("Join {}?", customer.display_name)).await;
    let page = text(&browser).await;
    for shown in [
        "Administrator",
        "bob@example.com",
        "UTC",
        "matches the invitation",
    ] {
        assert!(page.contains(shown), "the page shows {shown}: {page}");
    }
    screenshot(&browser, "invitation-answer").await;
    // The form without its CSRF token (removed from the page) is refused, and changes nothing.
    browser
        .execute(
            "document.querySelectorAll('input[name=csrf]').forEach(input => input.remove())",
            vec![],
        )
        .await
        .expect("remove the CSRF fields");
    click(&browser, "form[action='/invitations/accept'] button").await;
    expect_heading(&browser, "This form has expired").await;
    screenshot(&browser, "invitation-form-refused").await;
    assert!(
        !members(&cluster, alice, &customer.name)
            .await
            .iter()
            .any(|member| member.user == "users/bob"),
        "a POST without the CSRF token made bob a member"
    );
    // Back to the page, and Accept for real.
    browser
        .goto(&format!("{public_url}/invitations/accept"))
        .await
        .unwrap();
    click(&browser, "form[action='/invitations/accept'] button").await;
    expect_heading(&browser, &format!("Welcome to {}", customer.display_name)).await;
    screenshot(&browser, "invitation-accepted").await;
    let member = members(&cluster, alice, &customer.name)
        .await
        .into_iter()
        .find(|member| member.user == "users/bob")
        .expect("bob is a member, seen through gRPC");
    assert_eq!(member.role(), Role::Admin);
    assert_eq!(member.email, "bob@example.com");
    assert_eq!(member.given_name, "Bob");
    assert_eq!(state(&bob.name).await.state(), InvitationState::Accepted);
    // The link, opened again, was used.
    browser.goto(&link).await.unwrap();
    expect_heading(&browser, "This invitation was already used").await;
    screenshot(&browser, "invitation-already-used").await;
    browser.close().await.unwrap();

    // Carol declines.
    let carol = invite(
        &cluster,
        alice,
        &customer.name,
        "carol@example.com",
        Role::Employee,
    )
    .await
    .expect("invite carol");
    let link = link_for("carol@example.com").await;
    let browser = webdriver.session().await;
    open_and_sign_in(&browser, &link, "carol", None).await;
    click(&browser, "form[action='/invitations/decline'] button").await;
    expect_heading(&browser, "Invitation declined").await;
    screenshot(&browser, "invitation-declined").await;
    let declined = state(&carol.name).await;
    assert_eq!(declined.state(), InvitationState::Declined);
    assert_eq!(declined.declined_by, "users/carol");
    browser.close().await.unwrap();

    // Dave's link reaches Mallory: she signs in with her own e-mail and can answer nothing.
    let dave = invite(
        &cluster,
        alice,
        &customer.name,
        "dave@example.com",
        Role::Employee,
    )
    .await
    .expect("invite dave");
    let link = link_for("dave@example.com").await;
    let browser = webdriver.session().await;
    open_and_sign_in(&browser, &link, "mallory", None).await;
    expect_heading(&browser, "This invitation is for another e-mail address").await;
    assert!(
        browser
            .find(Locator::Css("form[action='/invitations/accept']"))
            .await
            .is_err(),
        "no Accept for another e-mail address"
    );
    screenshot(&browser, "invitation-wrong-email").await;
    assert_eq!(state(&dave.name).await.state(), InvitationState::Pending);
    assert!(
        !members(&cluster, alice, &customer.name)
            .await
            .iter()
            .any(|member| member.user == "users/mallory"),
        "mallory became a member"
    );
    // The right person may be at the same browser: another account, asked for afresh.
    click(&browser, "a[href='/invitations/sign-in?prompt=login']").await;
    provider_login(&browser, "dave").await;
    expect_heading(&browser, &format!("Join {}?", customer.display_name)).await;
    // Alice withdraws it before Dave answers; the page says so.
    cluster
        .invitation_as(alice)
        .revoke_invitation(RevokeInvitationRequest {
            name: dave.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("revoke");
    browser.refresh().await.unwrap();
    expect_heading(&browser, "This invitation was withdrawn").await;
    screenshot(&browser, "invitation-withdrawn").await;
    browser.close().await.unwrap();

    // Erin's invitation expires before she opens it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let expire = prost_types::Timestamp {
        seconds: i64::try_from(now.as_secs()).unwrap() + 3,
        nanos: 0,
    };
    cluster
        .invitation_as(alice)
        .create_invitation(CreateInvitationRequest {
            parent: customer.name.clone(),
            email: "erin@example.com".into(),
            role: Role::Employee as i32,
            expire_time: Some(expire),
            ..Default::default()
        })
        .await
        .expect("invite erin briefly");
    let link = link_for("erin@example.com").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let browser = webdriver.session().await;
    open_and_sign_in(&browser, &link, "erin", None).await;
    expect_heading(&browser, "This invitation has expired").await;
    screenshot(&browser, "invitation-expired").await;
    // A link that matches nothing.
    browser
        .goto(&format!(
            "{public_url}/invitations/accept?token=not-a-real-secret"
        ))
        .await
        .unwrap();
    expect_heading(&browser, "This link does not work").await;
    screenshot(&browser, "invitation-unknown-link").await;
    browser.close().await.unwrap();
    cluster.stop().await;
}

/// Under `tenantry up` with the development secret, the page offers the plainly labelled
/// development sign-in instead of an identity provider: the README's walkthrough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_sign_in_in_a_real_browser() {
    let Some(tools) = browser_or_skip() else {
        return;
    };
    let page_port = free_port();
    let public_url = format!("http://127.0.0.1:{page_port}");
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.invitation.public_url = public_url.clone();
    options.invitation.accept_page_listen = Some(([127, 0, 0, 1], page_port).into());
    options.invitation.development_sign_in = true;
    let cluster = TestCluster::start_with(options).await;
    let webdriver = WebDriver::start(&tools).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    invite(
        &cluster,
        alice,
        &customer.name,
        "carol@globex.example",
        Role::Employee,
    )
    .await
    .expect("invite carol");
    let link = cluster.wait_for_mail_files("carol@globex.example", 1).await[0]
        .accept_link()
        .expect("a link");

    let browser = webdriver.session().await;
    browser.goto(&link).await.unwrap();
    expect_heading(&browser, "You have been invited").await;
    assert!(text(&browser).await.contains("Development sign-in"));
    let fill = async |css: &str, value: &str| {
        browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    };
    fill("#email", "carol@globex.example").await;
    fill("#given_name", "Carol").await;
    fill("#family_name", "Quinn").await;
    screenshot(&browser, "invitation-development-sign-in").await;
    click(&browser, ".dev button[type=submit]").await;
    expect_heading(&browser, &format!("Join {}?", customer.display_name)).await;
    assert!(
        text(&browser)
            .await
            .contains("with the development sign-in")
    );
    click(&browser, "form[action='/invitations/accept'] button").await;
    expect_heading(&browser, &format!("Welcome to {}", customer.display_name)).await;
    let carol = members(&cluster, alice, &customer.name)
        .await
        .into_iter()
        .find(|member| member.user == "users/carol@globex.example")
        .expect("carol is a member under her e-mail as user id");
    assert_eq!(
        (carol.given_name.as_str(), carol.family_name.as_str()),
        ("Carol", "Quinn")
    );
    browser.close().await.unwrap();
    cluster.stop().await;
}
