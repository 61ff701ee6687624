//! The bad values the RPC tables share: resource names of every wrong shape, page sizes and
//! tokens, e-mail addresses, free text, enum values, timestamps and durations.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// More than the servers' 256 KiB request limit.
pub const OVERSIZED_BYTES: usize = 300 * 1024;

/// A string that makes any request larger than the servers accept.
pub fn oversized() -> String {
    "x".repeat(OVERSIZED_BYTES)
}

type Values = Vec<(&'static str, String)>;

fn owned(values: &[(&'static str, &str)]) -> Values {
    values
        .iter()
        .map(|(what, value)| (*what, value.to_string()))
        .collect()
}

/// Identifiers that break the identifier rules (lower-case ASCII letters, digits and single
/// hyphens; a letter first; a letter or digit last; 3 to 32 characters).
pub fn bad_identifiers() -> Values {
    let mut values = owned(&[
        ("empty", ""),
        ("too short", "ab"),
        ("starts with a digit", "1globex"),
        ("starts with a hyphen", "-globex"),
        ("ends with a hyphen", "globex-"),
        ("double hyphen", "glo--bex"),
        ("upper case", "Globex"),
        ("space", "glo bex"),
        ("underscore", "glo_bex"),
        ("dot", "glo.bex"),
        ("slash", "glo/bex"),
        ("umlaut", "glöbex"),
        ("Cyrillic е, a confusable of e", "glob\u{0435}x"),
        (
            "fullwidth letters",
            "\u{ff47}\u{ff4c}\u{ff4f}\u{ff42}\u{ff45}\u{ff58}",
        ),
        ("zero-width space", "glo\u{200b}bex"),
        ("right-to-left override", "\u{202e}xebolg"),
        ("NUL", "glo\u{0}bex"),
        ("newline", "globex\n"),
        ("DEL", "globex\u{7f}"),
        ("leading space", " globex"),
    ]);
    values.push(("33 characters", format!("a{}", "b".repeat(32))));
    values.push(("10,000 characters", "a".repeat(10_000)));
    values
}

/// Account names of every wrong shape, including `accounts/{id}` with an `id` that no account
/// can have.
pub fn bad_account_names() -> Values {
    let mut values = owned(&[
        ("empty", ""),
        ("collection only", "accounts/"),
        ("collection without slash", "accounts"),
        ("bare identifier", "globex"),
        ("wrong collection", "users/globex"),
        ("upper-case collection", "Accounts/globex"),
        ("trailing slash", "accounts/globex/"),
        ("a child collection", "accounts/globex/members"),
        ("a member name", "accounts/globex/members/erin"),
        ("dot segment", "accounts/../globex"),
        ("percent-encoded", "accounts/glob%65x"),
        ("leading space", " accounts/globex"),
        ("trailing newline", "accounts/globex\n"),
        ("query string", "accounts/globex?x=1"),
    ]);
    values.extend(
        bad_identifiers()
            .into_iter()
            .filter(|(what, _)| *what != "empty")
            .map(|(what, id)| (what, format!("accounts/{id}"))),
    );
    values
}

/// User names of every wrong shape.
pub fn bad_user_names() -> Values {
    let mut values = owned(&[
        ("empty", ""),
        ("collection only", "users/"),
        ("collection without slash", "users"),
        ("bare id", "erin"),
        ("wrong collection", "accounts/erin"),
        ("upper-case collection", "Users/erin"),
        ("slash in the id", "users/erin/x"),
        ("newline", "users/erin\n"),
        ("NUL", "users/er\u{0}in"),
        ("DEL", "users/erin\u{7f}"),
    ]);
    values.push(("256-character id", format!("users/{}", "u".repeat(256))));
    values
}

/// Member names of every wrong shape, for members of `account` (a valid account name).
pub fn bad_member_names(account: &str) -> Values {
    let mut values: Values = owned(&[
        ("empty", ""),
        ("bare collection", "members/erin"),
        ("account without collection", "accounts/globex"),
        ("empty account", "accounts//members/erin"),
        ("upper-case account", "accounts/GLOBEX/members/erin"),
        (
            "Cyrillic о in the account",
            "accounts/gl\u{043e}bex/members/erin",
        ),
        (
            "account breaking the identifier rules",
            "accounts/-globex/members/erin",
        ),
    ]);
    for (what, suffix) in [
        ("collection only", "/members/".to_string()),
        ("collection without slash", "/members".to_string()),
        ("wrong collection", "/users/erin".to_string()),
        ("slash in the user id", "/members/erin/x".to_string()),
        ("newline in the user id", "/members/erin\n".to_string()),
        ("NUL in the user id", "/members/er\u{0}in".to_string()),
        (
            "256-character user id",
            format!("/members/{}", "u".repeat(256)),
        ),
    ] {
        values.push((what, format!("{account}{suffix}")));
    }
    values
}

/// Names of children `accounts/{id}/{collection}/{uuid}` (invitations, messages) of every wrong
/// shape; `account` is a valid account name.
pub fn bad_child_names(account: &str, collection: &str) -> Values {
    let id = uuid::Uuid::new_v4();
    let hyphenated = id.hyphenated().to_string();
    let mut values: Values = vec![
        ("empty", String::new()),
        ("bare collection", format!("{collection}/{hyphenated}")),
        ("account only", account.to_string()),
        (
            "upper-case account",
            format!("accounts/GLOBEX/{collection}/{hyphenated}"),
        ),
        (
            "account breaking the identifier rules",
            format!("accounts/glo--bex/{collection}/{hyphenated}"),
        ),
        ("wrong collection", format!("{account}/things/{hyphenated}")),
        (
            "singular collection",
            format!(
                "{account}/{}/{hyphenated}",
                collection.trim_end_matches('s')
            ),
        ),
    ];
    let forms = [
        ("collection only", String::new()),
        ("not a UUID", "not-a-uuid".to_string()),
        ("trailing segment", format!("{hyphenated}/x")),
        ("upper-case UUID", hyphenated.to_uppercase()),
        ("UUID in braces", format!("{{{hyphenated}}}")),
        ("URN form", format!("urn:uuid:{hyphenated}")),
        ("UUID without hyphens", id.simple().to_string()),
        (
            "Arabic-Indic digit",
            format!("{}\u{0661}", &hyphenated[..35]),
        ),
        ("trailing newline", format!("{hyphenated}\n")),
        ("10,000 characters", "f".repeat(10_000)),
    ];
    for (what, id) in forms {
        values.push((what, format!("{account}/{collection}/{id}")));
    }
    values
}

/// A well-formed name of a child nobody created.
pub fn unknown_child(account: &str, collection: &str) -> String {
    format!("{account}/{collection}/{}", uuid::Uuid::new_v4())
}

/// Negative page sizes: INVALID_ARGUMENT naming `page_size`.
pub const BAD_PAGE_SIZES: [(&str, i32); 2] = [("-1", -1), ("i32::MIN", i32::MIN)];
/// A huge page size: capped at 1000, not an error.
pub const HUGE_PAGE_SIZE: i32 = i32::MAX;

/// Page tokens that were never issued for the query they are sent with. `foreign` is a real
/// token of another query.
pub fn bad_page_tokens(foreign: &str) -> Values {
    let mut values = owned(&[
        ("garbage", "garbage"),
        ("a lone dot", "."),
        ("empty halves", ".."),
        ("three parts", "a.b.c"),
        ("not base64", "!!!.???"),
        ("control characters", "ab\n.cd\u{0}"),
        ("non-ASCII", "ü.ü"),
    ]);
    values.push(("3,000 characters", "A".repeat(3_000)));
    values.push((
        "forged tag",
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("globex"),
            URL_SAFE_NO_PAD.encode([0u8; 16])
        ),
    ));
    values.push(("another query's token", foreign.to_string()));
    values.push(("truncated token", foreign[..foreign.len() - 1].to_string()));
    let mut flipped = foreign.to_string().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    values.push((
        "token with one byte changed",
        String::from_utf8(flipped).expect("ASCII"),
    ));
    values
}

/// E-mail addresses no one can have.
pub fn bad_emails() -> Values {
    let mut values = owned(&[
        ("empty", ""),
        ("blank", "   "),
        ("no @", "ivy"),
        ("no local part", "@example.com"),
        ("no domain", "ivy@"),
        ("domain without a dot", "ivy@example"),
        ("two @", "ivy@@example.com"),
        ("@ in the local part", "i@vy@example.com"),
        ("space in the local part", "ivy smith@example.com"),
        ("space in the domain", "ivy@exa mple.com"),
        ("bell character", "ivy\u{7}@example.com"),
        ("newline", "ivy@example.com\nBcc: all@example.com"),
        ("domain starts with a dot", "ivy@.example.com"),
        ("domain ends with a dot", "ivy@example.com."),
        ("empty domain label", "ivy@example..com"),
        ("label starts with a hyphen", "ivy@-example.com"),
        ("angle brackets", "<ivy>@example.com"),
        ("display-name form", "Ivy <ivy@example.com>"),
        ("zero-width space", "ivy\u{200b}@example.com"),
        ("right-to-left override", "ivy@\u{202e}moc.elpmaxe"),
        // Refused by the mailer's address rules too, so never stored only to fail at sending.
        (
            "two dots in a row in the local part",
            "jane..doe@example.com",
        ),
        ("local part starts with a dot", ".jane@example.com"),
        ("local part ends with a dot", "jane.@example.com"),
        ("a comment in the local part", "a(b)@example.com"),
        ("a bracket in the local part", "jane[1]@example.com"),
        ("a colon in the local part", "jane:doe@example.com"),
        ("a semicolon in the local part", "jane;doe@example.com"),
    ]);
    values.push((
        "65-character local part",
        format!("{}@example.com", "i".repeat(65)),
    ));
    values.push(("255 characters", format!("i@{}.com", "e".repeat(249))));
    values
}

/// Single-line free text (display names, titles, given names) that is refused; the field's
/// length limit is `max_chars`.
pub fn bad_line_text(max_chars: usize) -> Values {
    let mut values = owned(&[
        ("newline", "Globex\nCorporation"),
        ("carriage return", "Globex\rCorporation"),
        ("tab", "Globex\tCorporation"),
        ("NUL", "Glo\u{0}bex"),
        ("bell", "Globex\u{7}"),
        ("escape sequence", "\u{1b}[31mGlobex"),
        ("DEL", "Globex\u{7f}"),
        ("C1 control", "Glo\u{9b}bex"),
        ("zero-width space", "Glo\u{200b}bex"),
        ("byte-order mark", "\u{feff}Globex"),
        ("line separator", "Globex\u{2028}Corporation"),
        ("paragraph separator", "Globex\u{2029}Corporation"),
        ("right-to-left override", "Globex \u{202e}noitaroproC"),
        ("left-to-right embedding", "\u{202a}Globex"),
        ("first-strong isolate", "Globex \u{2068}x\u{2069}"),
    ]);
    values.push(("one character too long", "x".repeat(max_chars + 1)));
    values.push(("10,000 characters", "x".repeat(10_000)));
    values
}

/// Single-line free text that is valid: other scripts, confusables and emoji are text.
pub fn good_line_text(max_chars: usize) -> Values {
    vec![
        (
            "Cyrillic look-alike letters",
            "Gl\u{043e}bex Corp".to_string(),
        ),
        (
            "emoji with a zero-width joiner",
            "Globex \u{1f469}\u{200d}\u{1f4bb}".to_string(),
        ),
        (
            "right-to-left script",
            "\u{5d2}\u{5dc}\u{5d5}\u{5d1}\u{5e7}\u{5e1}".to_string(),
        ),
        ("the limit in two-byte characters", "ü".repeat(max_chars)),
    ]
}

/// Request ids that are not UUIDs.
pub fn bad_request_ids() -> Values {
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    vec![
        ("not a UUID", "not-a-uuid".to_string()),
        ("a number", "12345".to_string()),
        ("a UUID with a trailing character", format!("{id}x")),
        ("a UUID with a non-hex digit", format!("{}g", &id[..35])),
        ("a UUID with a newline", format!("{id}\n")),
    ]
}

/// Enum values no API defines.
pub const UNKNOWN_ENUMS: [(&str, i32); 3] = [("99", 99), ("-1", -1), ("i32::MAX", i32::MAX)];

/// Timestamps that are no valid `google.protobuf.Timestamp` (0001-01-01 to 9999-12-31): (what,
/// seconds, nanos).
pub const BAD_TIMESTAMPS: [(&str, i64, i32); 5] = [
    ("negative nanos", 4_000_000_000, -1),
    (
        "year 10000, past google.protobuf.Timestamp's range",
        253_402_300_800,
        0,
    ),
    ("nanos of a whole second", 4_000_000_000, 1_000_000_000),
    ("seconds beyond any calendar", i64::MAX, 0),
    ("seconds before any calendar", i64::MIN, 0),
];

/// The last instant a `google.protobuf.Timestamp` can hold: (seconds, nanos).
pub const LAST_TIMESTAMP: (i64, i32) = (253_402_300_799, 999_999_999);

/// `now` shifted by `seconds` (negative: in the past).
pub fn from_now(seconds: i64) -> prost_types::Timestamp {
    let now = std::time::SystemTime::now();
    let shift = std::time::Duration::from_secs(seconds.unsigned_abs());
    prost_types::Timestamp::from(if seconds < 0 {
        now - shift
    } else {
        now + shift
    })
}

/// A day, in seconds.
pub const DAY: i64 = 86_400;

/// Durations that are no valid `google.protobuf.Duration` (beyond ±10,000 years, nanos of a
/// second or more, nanos of the other sign than the seconds): (what, seconds, nanos).
pub const BAD_DURATIONS: [(&str, i64, i32); 7] = [
    ("positive seconds with negative nanos", 3_600, -1),
    ("negative seconds with positive nanos", -3_600, 1),
    ("nanos of a whole second", 3_600, 1_000_000_000),
    ("nanos of minus a whole second", -3_600, -1_000_000_000),
    ("beyond 10,000 years", 315_576_000_001, 0),
    ("seconds beyond any calendar", i64::MAX, 0),
    ("seconds before any calendar", i64::MIN, 0),
];
