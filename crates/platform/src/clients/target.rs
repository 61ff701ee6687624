//! What a peer URL names: one server, a fixed list of replicas, or a DNS name whose addresses
//! are the replicas.

use std::collections::HashSet;

use http::Uri;
use http::uri::Authority;

/// The parsed form of a peer URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerTarget {
    /// One `http(s)://host:port`: one lazily connected channel, as tonic makes it.
    Single,
    /// `http://a:50051,http://b:50051`: one replica per entry, all of one scheme.
    List(Vec<Uri>),
    /// `dns:///host:port` (or `dns+https:///host:port`): every address the name resolves to
    /// is a replica; the name is resolved again from time to time.
    Dns {
        /// The DNS name (or an IP literal, brackets removed).
        host: String,
        /// The port of every replica.
        port: u16,
        /// Whether the URL asks for TLS (`dns+https:`).
        https: bool,
    },
}

impl PeerTarget {
    /// Reads `url`; the error says what is wrong with it (the caller names the URL).
    pub(crate) fn parse(url: &str) -> Result<PeerTarget, String> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("dns+https:") {
            return dns(rest, true);
        }
        if let Some(rest) = url.strip_prefix("dns:") {
            return dns(rest, false);
        }
        if !url.contains(',') {
            return Ok(PeerTarget::Single);
        }
        let mut uris = Vec::new();
        let mut seen = HashSet::new();
        let mut scheme = None;
        for (index, entry) in url.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                return Err(format!("entry {} of the list is empty", index + 1));
            }
            let uri = Uri::try_from(entry).map_err(|error| format!("{entry:?}: {error}"))?;
            let this = match uri.scheme_str() {
                Some(scheme @ ("http" | "https")) => scheme.to_string(),
                _ => return Err(format!("{entry:?} is not an http:// or https:// URL")),
            };
            if uri.host().is_none_or(str::is_empty) {
                return Err(format!("{entry:?} names no host"));
            }
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err(format!(
                    "{entry:?} has a path; give scheme, host and port only"
                ));
            }
            match &scheme {
                None => scheme = Some(this),
                Some(first) if *first != this => {
                    return Err("the entries mix http:// and https://".to_string());
                }
                Some(_) => {}
            }
            if !seen.insert(entry.to_string()) {
                return Err(format!("{entry:?} is listed twice"));
            }
            uris.push(uri);
        }
        Ok(PeerTarget::List(uris))
    }
}

/// `///host:port` after the `dns:` scheme.
fn dns(rest: &str, https: bool) -> Result<PeerTarget, String> {
    let Some(name) = rest.strip_prefix("///") else {
        return Err(if rest.starts_with("//") {
            "a DNS server authority is not supported: write dns:///host:port".to_string()
        } else {
            "write dns:///host:port".to_string()
        });
    };
    if name.contains(['/', '?', '#', ',']) {
        return Err("a dns: URL names one host:port, without a path".to_string());
    }
    let authority: Authority = name
        .parse()
        .map_err(|error| format!("{name:?} is not host:port: {error}"))?;
    if name.contains('@') {
        return Err("a dns: URL takes no user name".to_string());
    }
    let port = authority
        .port_u16()
        .ok_or_else(|| format!("{name:?} has no port: write dns:///host:port"))?;
    if port == 0 {
        return Err("port 0 cannot be called".to_string());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{name:?} names no host"));
    }
    Ok(PeerTarget::Dns {
        host: host.to_string(),
        port,
        https,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(host: &str, port: u16, https: bool) -> PeerTarget {
        PeerTarget::Dns {
            host: host.to_string(),
            port,
            https,
        }
    }

    #[test]
    fn one_url_stays_one_channel() {
        assert_eq!(
            PeerTarget::parse("http://membership:50051"),
            Ok(PeerTarget::Single)
        );
        assert_eq!(
            PeerTarget::parse("https://membership.example:443"),
            Ok(PeerTarget::Single)
        );
    }

    #[test]
    fn dns_names_host_and_port() {
        assert_eq!(
            PeerTarget::parse("dns:///membership-headless:50051"),
            Ok(dns("membership-headless", 50051, false))
        );
        assert_eq!(
            PeerTarget::parse("dns+https:///membership.tenantry.svc:443"),
            Ok(dns("membership.tenantry.svc", 443, true))
        );
        assert_eq!(
            PeerTarget::parse("dns:///[::1]:50051"),
            Ok(dns("::1", 50051, false))
        );
        for bad in [
            "dns:///membership",
            "dns:///membership:0",
            "dns:///:50051",
            "dns://8.8.8.8/membership:50051",
            "dns:membership:50051",
            "dns:///membership:50051/path",
            "dns:///user@membership:50051",
            "dns:///membership:port",
            "dns:///",
        ] {
            assert!(PeerTarget::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn lists_name_one_replica_per_entry() {
        let Ok(PeerTarget::List(uris)) =
            PeerTarget::parse("http://a:50051, http://b:50051,http://10.0.0.3:50051")
        else {
            panic!("not a list");
        };
        let hosts: Vec<_> = uris.iter().map(|uri| uri.host().unwrap()).collect();
        assert_eq!(hosts, ["a", "b", "10.0.0.3"]);
    }

    #[test]
    fn bad_lists_are_refused() {
        for (bad, reason) in [
            (
                "http://a:50051,,http://b:50051",
                "entry 2 of the list is empty",
            ),
            ("http://a:50051,", "entry 2 of the list is empty"),
            (",http://a:50051", "entry 1 of the list is empty"),
            ("http://a:50051,https://b:50051", "mix http:// and https://"),
            ("http://a:50051,a:50051", "not an http:// or https:// URL"),
            (
                "http://a:50051,ftp://b:21",
                "not an http:// or https:// URL",
            ),
            ("http://a:50051,http://a:50051", "listed twice"),
            ("http://a:50051,http://b:50051/x", "has a path"),
            ("http://a:50051,http:// b", "\"http:// b\""),
        ] {
            let error = PeerTarget::parse(bad).expect_err(bad);
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }
}
