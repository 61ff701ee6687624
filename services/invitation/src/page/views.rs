//! The page's HTML: plain forms (no JavaScript), one stylesheet served from the page's own
//! origin, every value escaped. Each state a person can meet has its own text saying what
//! happened and what to do.

use std::fmt::Write;

/// The stylesheet, served at [`STYLESHEET_PATH`] (the Content-Security-Policy allows styles
/// from the page's origin only).
pub const STYLESHEET: &str = r#":root{color-scheme:light;--ink:#1a1a1a;--muted:#4a4a4a;--accent:#0b5cad;--line:#c8c8c8;--bad:#a4161a;--good:#1b6b2f}
*{box-sizing:border-box}
body{margin:0;font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#f4f5f7}
main{max-width:34rem;margin:2rem auto;padding:1.5rem;background:#fff;border:1px solid var(--line);border-radius:.5rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
p{margin:.75rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem;margin:1rem 0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.notice{padding:.75rem 1rem;border-left:.3rem solid var(--accent);background:#eef4fb}
.warning{border-left-color:var(--bad);background:#fbeeee}
.ok{border-left-color:var(--good);background:#eef8f0}
.dev{border:2px dashed var(--bad);padding:1rem;border-radius:.5rem;margin-top:1.5rem}
.dev h2{font-size:1.1rem;margin:0 0 .5rem;color:var(--bad)}
label{display:block;font-weight:600;margin-top:.75rem}
input[type=email],input[type=text]{width:100%;padding:.6rem;font:inherit;border:1px solid #767676;border-radius:.3rem}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.25rem}
.actions form{margin:0}
button,.button{display:inline-block;padding:.65rem 1.2rem;font:inherit;font-weight:600;border-radius:.3rem;border:2px solid var(--accent);background:var(--accent);color:#fff;text-decoration:none;cursor:pointer}
button.secondary,.button.secondary{background:#fff;color:var(--accent)}
button.link{background:none;border:none;color:var(--accent);text-decoration:underline;padding:0;font-weight:400}
a{color:var(--accent)}
:focus-visible{outline:3px solid #f0a202;outline-offset:2px}
.who{color:var(--muted);font-size:.95rem;border-top:1px solid var(--line);margin-top:1.5rem;padding-top:.75rem}
.who p{margin:0 0 .25rem}
@media (max-width:36rem){main{margin:0;border:none;border-radius:0;min-height:100vh}dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}}
"#;

/// Where the stylesheet is served.
pub const STYLESHEET_PATH: &str = "/invitations/page.css";

// One escaper for the e-mail and the page.
use crate::render::html_escape as escape;

/// A whole page: `title` (plain text) and `body` (HTML built by this module).
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{title} · Tenantry</title><link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\"></head>\
<body><main>{body}</main></body></html>\n",
        title = escape(title)
    )
}

/// A page that only explains: a heading, paragraphs (plain text) and optionally a link.
pub fn message(title: &str, paragraphs: &[&str], link: Option<(&str, &str)>) -> String {
    let mut body = format!("<h1>{}</h1>", escape(title));
    for paragraph in paragraphs {
        let _ = write!(body, "<p>{}</p>", escape(paragraph));
    }
    if let Some((href, text)) = link {
        let _ = write!(
            body,
            "<p><a class=\"button\" href=\"{}\">{}</a></p>",
            escape(href),
            escape(text)
        );
    }
    layout(title, &body)
}

/// What the page knows of the invitation (from LookupInvitation).
#[derive(Clone, Debug)]
pub struct Summary {
    /// The account's display name.
    pub account: String,
    /// Who invited.
    pub inviter: String,
    /// The role, in words.
    pub role: &'static str,
    /// The invited address.
    pub email: String,
    /// The expiry, in words (UTC).
    pub expires: String,
}

/// The signed-in person, as the page shows them.
#[derive(Clone, Debug)]
pub struct Person {
    /// Name, or e-mail, or user id.
    pub label: String,
    /// The verified e-mail, if any.
    pub email: Option<String>,
    /// Whether this is the development sign-in.
    pub development: bool,
    /// The CSRF token of the sign-out form (the session's own: signing out needs no link).
    pub sign_out_csrf: String,
}

fn summary_list(summary: &Summary) -> String {
    format!(
        "<dl><dt>Account</dt><dd>{}</dd><dt>Invited by</dt><dd>{}</dd><dt>Role</dt><dd>{}</dd>\
<dt>Sent to</dt><dd>{}</dd><dt>Expires</dt><dd>{}</dd></dl>",
        escape(&summary.account),
        escape(&summary.inviter),
        escape(summary.role),
        escape(&summary.email),
        escape(&summary.expires)
    )
}

fn hidden_csrf(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    )
}

/// The "signed in as … · Sign out" line.
fn signed_in_line(person: &Person) -> String {
    let email = person
        .email
        .as_deref()
        .map(|email| format!(" ({})", escape(email)))
        .unwrap_or_else(|| " (no verified e-mail address)".to_string());
    let development = if person.development {
        " with the development sign-in"
    } else {
        ""
    };
    format!(
        "<div class=\"who\"><p>Signed in as <strong>{}</strong>{email}{development}.</p>\
<form method=\"post\" action=\"/invitations/sign-out\">{}<button class=\"link\" type=\"submit\">Sign out</button></form></div>",
        escape(&person.label),
        hidden_csrf(&person.sign_out_csrf)
    )
}

/// Not signed in yet: the way(s) to sign in (`development`: the CSRF token of the development
/// sign-in's form, when it is on), and what was wrong with the last attempt.
pub fn sign_in(openid: bool, development: Option<&str>, error: Option<&str>) -> String {
    let mut body = String::from(
        "<h1>You have been invited</h1><p>Sign in to see the invitation and answer it. \
Use the account of the e-mail address the invitation was sent to.</p>",
    );
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"notice warning\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    if openid {
        body.push_str(
            "<div class=\"actions\"><a class=\"button\" href=\"/invitations/sign-in\">Sign in</a></div>",
        );
    }
    if let Some(csrf) = development {
        let _ = write!(
            body,
            "<section class=\"dev\" aria-labelledby=\"dev-title\"><h2 id=\"dev-title\">Development sign-in</h2>\
<p>For a local <code>tenantry up</code> with the public development secret only: no identity provider checks \
who you are. Your user id will be the e-mail address you enter.</p>\
<form method=\"post\" action=\"/invitations/dev-sign-in\">{}\
<label for=\"email\">E-mail address</label><input id=\"email\" name=\"email\" type=\"email\" required autocomplete=\"email\">\
<label for=\"given_name\">Given name</label><input id=\"given_name\" name=\"given_name\" type=\"text\" autocomplete=\"given-name\">\
<label for=\"family_name\">Family name</label><input id=\"family_name\" name=\"family_name\" type=\"text\" autocomplete=\"family-name\">\
<div class=\"actions\"><button type=\"submit\">Sign in for development</button></div></form></section>",
            hidden_csrf(csrf)
        );
    }
    if !openid && development.is_none() {
        body.push_str(
            "<p class=\"notice warning\">Sign-in is not configured for this page. Ask the person who \
invited you to contact their administrator.</p>",
        );
    }
    layout("Sign in to answer your invitation", &body)
}

/// A PENDING invitation the signed-in person may answer.
pub fn answer(summary: &Summary, person: &Person, csrf: &str) -> String {
    let body = format!(
        "<h1>Join {account}?</h1><p>{inviter} invited you to the account <strong>{account}</strong> \
as <strong>{role}</strong>.</p>{list}<p class=\"notice ok\">Your e-mail address matches the invitation.</p>\
<div class=\"actions\"><form method=\"post\" action=\"/invitations/accept\">{csrf}<button type=\"submit\">Accept</button></form>\
<form method=\"post\" action=\"/invitations/decline\">{csrf}<button class=\"secondary\" type=\"submit\">Decline</button></form></div>{who}",
        account = escape(&summary.account),
        inviter = escape(&summary.inviter),
        role = escape(summary.role),
        list = summary_list(summary),
        csrf = hidden_csrf(csrf),
        who = signed_in_line(person),
    );
    layout(&format!("Join {}?", summary.account), &body)
}

/// The invitation is for another address than the signed-in person's; `openid`: whether the
/// identity provider can be asked for another account.
pub fn wrong_email(summary: &Summary, person: &Person, openid: bool) -> String {
    let yours = match &person.email {
        Some(email) => format!("You are signed in as {}.", escape(email)),
        None => "Your sign-in did not give a verified e-mail address.".to_string(),
    };
    let body = format!(
        "<h1>This invitation is for another e-mail address</h1>\
<p class=\"notice warning\">The invitation was sent to <strong>{sent}</strong>. {yours} \
Only the invited address can accept or decline it.</p>{list}\
<p>Sign in with the account of {sent}, or ask {inviter} to invite your address instead.</p>{switch}{who}",
        switch = if openid && !person.development {
            "<div class=\"actions\"><a class=\"button\" href=\"/invitations/sign-in?prompt=login\">Use another account</a></div>"
        } else {
            ""
        },
        sent = escape(&summary.email),
        inviter = escape(&summary.inviter),
        list = summary_list(summary),
        who = signed_in_line(person),
    );
    layout("This invitation is for another e-mail address", &body)
}

/// The invitation can no longer be answered: `title` and `text` say why and what to do.
pub fn closed(title: &str, text: &str, summary: &Summary, person: &Person) -> String {
    let body = format!(
        "<h1>{}</h1><p class=\"notice warning\">{}</p>{}{}",
        escape(title),
        escape(text),
        summary_list(summary),
        signed_in_line(person)
    );
    layout(title, &body)
}

/// After Accept.
pub fn accepted(account: &str, role: &str, application: Option<&str>) -> String {
    let next = match application {
        Some(url) => format!(
            "<div class=\"actions\"><a class=\"button\" href=\"{}\">Go to the application</a></div>",
            escape(url)
        ),
        None => "<p>You can close this page and open the application.</p>".to_string(),
    };
    let body = format!(
        "<h1>Welcome to {account}</h1><p class=\"notice ok\">You are now a member of <strong>{account}</strong> \
as <strong>{role}</strong>.</p>{next}",
        account = escape(account),
        role = escape(role),
    );
    layout(&format!("Welcome to {account}"), &body)
}

/// After Decline.
pub fn declined(account: &str) -> String {
    let body = format!(
        "<h1>Invitation declined</h1><p class=\"notice\">You declined the invitation to <strong>{}</strong>. \
The person who invited you can see that you declined. Nothing else changes.</p>\
<p>If this was a mistake, ask them to send you a new invitation.</p>",
        escape(account)
    );
    layout("Invitation declined", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        let page = declined("<img src=x onerror=alert(1)>");
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn every_input_has_a_label_and_forms_carry_the_csrf_token() {
        let page = sign_in(true, Some("t0k"), None);
        for id in ["email", "given_name", "family_name"] {
            assert!(page.contains(&format!("<label for=\"{id}\">")));
            assert!(page.contains(&format!("id=\"{id}\"")));
        }
        assert!(page.contains("name=\"csrf\" value=\"t0k\""));
        assert!(page.contains("Development sign-in"));
        assert!(!sign_in(true, None, Some("<bad>")).contains("Development"));
        let summary = Summary {
            account: "Globex".into(),
            inviter: "Alice".into(),
            role: "Employee",
            email: "bob@example.com".into(),
            expires: "soon".into(),
        };
        let person = Person {
            label: "Bob".into(),
            email: Some("bob@example.com".into()),
            development: false,
            sign_out_csrf: "s1gn".into(),
        };
        let page = answer(&summary, &person, "t0k");
        assert_eq!(page.matches("name=\"csrf\" value=\"t0k\"").count(), 2);
        assert_eq!(page.matches("name=\"csrf\" value=\"s1gn\"").count(), 1);
        assert!(page.contains("lang=\"en\"") && page.contains("name=\"viewport\""));
    }
}
