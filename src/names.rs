//! Kubernetes object-name rules (DNS-1123), checked before a name taken from
//! a request goes anywhere near the API. A segment that can't name an object
//! names none: it is answered without a call, and text like `a/b` or `x?y`
//! (a percent-encoded `/` or `?`, decoded by the router) is never pasted
//! into an API path (kube-rs appends names unescaped).

/// The longest namespace name (a DNS-1123 label).
pub const MAX_LABEL: usize = 63;
/// The longest object name (a DNS-1123 subdomain).
pub const MAX_SUBDOMAIN: usize = 253;

/// Whether `name` is a DNS-1123 label, as namespace names must be: lower-case
/// letters, digits and `-`, starting and ending with a letter or digit, at
/// most 63 characters.
pub fn is_dns1123_label(name: &str) -> bool {
    name.len() <= MAX_LABEL && is_label_part(name)
}

/// Whether `name` is a DNS-1123 subdomain, as the names of custom resources
/// (policies, Users, Groups) must be: labels joined by `.`, at most 253
/// characters in all.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= MAX_SUBDOMAIN && name.split('.').all(is_label_part)
}

/// One dot-free part, without the label's length limit (Kubernetes limits
/// only a subdomain's total length).
fn is_label_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_lower_case_alphanumerics_and_inner_dashes() {
        for good in ["a", "0", "team-a", "a1-b2", &"x".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "team_a",
            "a.b",
            "a/b",
            "a?b",
            "a%2Fb",
            "..",
            "é",
            " a",
            &"x".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn subdomains_are_labels_joined_by_dots_up_to_253() {
        let long_part = "x".repeat(100);
        for good in [
            "wiki",
            "wiki.example",
            "6f1c2d3e-0000-4000-8000-00000000000a",
            long_part.as_str(),
            &format!("{}.{}", "a".repeat(126), "b".repeat(126)),
        ] {
            assert!(is_dns1123_subdomain(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "..",
            "../secrets",
            "a/b",
            "a?watch=true",
            "a#b",
            "A",
            "a.-b",
            "a b",
            &format!("{}.{}", "a".repeat(126), "b".repeat(127)),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
    }
}
