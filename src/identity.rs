//! How the names that identify a person are checked and compared, the same
//! way by every writer (SCIM, JIT logins, the controller's claims) and every
//! lookup (SCIM filters, Scim-mode logins).
//!
//! - The JIT subject (NameID or a configured attribute) is compared
//!   byte-exact, as the IdP signed it. It is refused when it begins or ends
//!   with whitespace or holds an invisible character, since such a value is
//!   a look-alike of another subject, never a real one.
//! - A userName must be something a person can read back unambiguously:
//!   no edge whitespace, no whitespace but U+0020, no control, format,
//!   private-use or unassigned characters, and in Unicode normalization form
//!   NFKC, which refuses the compatibility look-alikes (Kelvin sign, Ohm sign,
//!   fullwidth letters, ligatures, NBSP, EM SPACE) and decomposed accents.
//! - userName is caseExact=false (RFC 7643 §4.1.1), so it is compared by
//!   [`fold_user_name`]: each letter maps to its lowercase partner only when
//!   the two form a simple case pair (`É`↔`é`, `Σ`↔`σ`), and no non-ASCII
//!   character ever folds into ASCII. The Kelvin sign, `İ` (U+0130) or `ẞ`
//!   stay themselves, so they can never equal an ASCII name; `ı` (dotless i)
//!   is its own letter, distinct from `i`.

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::{GeneralCategory, GeneralCategoryGroup};

/// Why a userName or subject is refused. The message completes "the
/// userName …" / "the subject …".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is empty")]
    Empty,
    #[error("begins or ends with whitespace (U+{:04X})", u32::from(*.0))]
    EdgeWhitespace(char),
    #[error("contains the control or invisible character U+{:04X}", u32::from(*.0))]
    Invisible(char),
    #[error("contains whitespace other than a plain space (U+{:04X})", u32::from(*.0))]
    OddWhitespace(char),
    #[error(
        "is not in Unicode normalization form NFKC (compatibility characters such as the Kelvin sign or fullwidth letters, or decomposed accents)"
    )]
    NotNfkc,
}

/// Checks a JIT subject: compared byte-exact, so only look-alike padding and
/// invisible characters are refused.
pub fn validate_subject(subject: &str) -> Result<(), Refusal> {
    check_edges_and_visibility(subject)
}

/// Checks a userName before it is stored or looked up for a login.
pub fn validate_user_name(user_name: &str) -> Result<(), Refusal> {
    check_edges_and_visibility(user_name)?;
    if let Some(c) = user_name.chars().find(|&c| c.is_whitespace() && c != ' ') {
        return Err(Refusal::OddWhitespace(c));
    }
    if !ComposingNormalizerBorrowed::new_nfkc().is_normalized(user_name) {
        return Err(Refusal::NotNfkc);
    }
    Ok(())
}

fn check_edges_and_visibility(value: &str) -> Result<(), Refusal> {
    let (Some(first), Some(last)) = (value.chars().next(), value.chars().next_back()) else {
        return Err(Refusal::Empty);
    };
    // char::is_whitespace is Unicode's White_Space property.
    for c in [first, last] {
        if c.is_whitespace() {
            return Err(Refusal::EdgeWhitespace(c));
        }
    }
    // Cc, Cf (zero-width, bidi controls), Co, Cn: invisible, or with no
    // fixed meaning (an unassigned character's case mapping may change).
    let categories = CodePointMapData::<GeneralCategory>::new();
    if let Some(c) = value
        .chars()
        .find(|&c| GeneralCategoryGroup::Other.contains(categories.get(c)))
    {
        return Err(Refusal::Invisible(c));
    }
    Ok(())
}

/// The form under which two userNames are the same name (and share one
/// `UserNameClaim`). Defined for every string, so a lookup with a refused
/// name simply finds nobody.
pub fn fold_user_name(user_name: &str) -> String {
    user_name.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    // Final sigma is the other lowercase of Σ (CaseFolding.txt: 03C2; C; 03C3).
    if c == 'ς' {
        return 'σ';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        // A simple case pair: one lowercase letter whose uppercase is `c`.
        (Some(l), None) if l != c && !l.is_ascii() && upper_is(l, c) => l,
        _ => c,
    }
}

fn upper_is(lower: char, upper: char) -> bool {
    let mut up = lower.to_uppercase();
    up.next() == Some(upper) && up.next().is_none()
}

/// Whether two userNames are the same name.
pub fn same_user_name(a: &str, b: &str) -> bool {
    fold_user_name(a) == fold_user_name(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KELVIN: &str = "\u{212A}evin@corp.com";
    const FULLWIDTH: &str = "\u{FF4B}evin@corp.com"; // ｋevin
    const DOTLESS: &str = "adm\u{0131}n@corp.com"; // admın

    #[test]
    fn plain_names_are_valid() {
        for name in [
            "kevin@corp.com",
            "John Smith",
            "josé@corp.com",
            "Ömer.Yılmaz@corp.com",
            DOTLESS,
        ] {
            assert_eq!(validate_user_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn edge_whitespace_is_refused() {
        for (name, c) in [
            ("admin@corp.com\u{A0}", '\u{A0}'),
            ("admin@corp.com\t", '\t'),
            ("\u{2003}admin@corp.com", '\u{2003}'),
            (" admin@corp.com", ' '),
            ("admin@corp.com\n", '\n'),
        ] {
            assert_eq!(validate_user_name(name), Err(Refusal::EdgeWhitespace(c)));
            assert_eq!(validate_subject(name), Err(Refusal::EdgeWhitespace(c)));
        }
        assert_eq!(validate_user_name(""), Err(Refusal::Empty));
        assert_eq!(validate_subject(""), Err(Refusal::Empty));
    }

    #[test]
    fn invisible_characters_are_refused_anywhere() {
        for c in [
            '\u{200B}', '\u{200E}', '\u{202E}', '\u{FEFF}', '\u{AD}', '\t', '\u{7F}',
        ] {
            let name = format!("ad{c}min@corp.com");
            assert_eq!(validate_user_name(&name), Err(Refusal::Invisible(c)));
            assert_eq!(validate_subject(&name), Err(Refusal::Invisible(c)));
        }
        assert_eq!(
            validate_user_name("a\u{E000}b"),
            Err(Refusal::Invisible('\u{E000}'))
        );
    }

    #[test]
    fn inner_whitespace_other_than_a_space_is_refused() {
        assert_eq!(
            validate_user_name("admin\u{2003}x"),
            Err(Refusal::OddWhitespace('\u{2003}'))
        );
        assert_eq!(
            validate_user_name("admin\u{A0}x"),
            Err(Refusal::OddWhitespace('\u{A0}'))
        );
        // A subject is compared byte-exact: inner spaces are its own business.
        assert_eq!(validate_subject("CN=John\u{A0}Smith"), Ok(()));
    }

    #[test]
    fn compatibility_look_alikes_are_refused() {
        for name in [
            KELVIN,
            FULLWIDTH,
            "\u{FF21}DMIN@corp.com", // ＡDMIN
            "\u{2126}mega",          // Ohm sign
            "\u{FB01}le",            // ﬁ ligature
            "jose\u{301}",           // decomposed é
        ] {
            assert_eq!(validate_user_name(name), Err(Refusal::NotNfkc), "{name:?}");
        }
        // The subject is compared exactly, so no look-alike can reach another's.
        assert_eq!(validate_subject(KELVIN), Ok(()));
    }

    #[test]
    fn ascii_letters_fold_and_look_alikes_never_reach_ascii() {
        assert_eq!(fold_user_name("KEVIN@Corp.COM"), "kevin@corp.com");
        assert!(same_user_name("KEVIN@corp.com", "kevin@corp.com"));
        for look_alike in [KELVIN, FULLWIDTH, "\u{FF2B}evin@corp.com"] {
            assert!(
                !same_user_name(look_alike, "kevin@corp.com"),
                "{look_alike:?}"
            );
        }
        assert!(!same_user_name(DOTLESS, "admin@corp.com"));
        assert!(!same_user_name("ADM\u{130}N@corp.com", "admin@corp.com"));
        assert!(!same_user_name("ADMIN@corp.com", DOTLESS));
    }

    #[test]
    fn non_ascii_case_pairs_fold() {
        assert!(same_user_name("JOSÉ@corp.com", "josé@corp.com"));
        assert!(same_user_name("ΟΔΟΣ", "οδος"));
        assert!(same_user_name("Ömer", "ömer"));
        // Not a simple pair: ẞ lowercases to ß, whose uppercase is "SS".
        assert!(!same_user_name("\u{1E9E}", "ß"));
    }

    #[test]
    fn no_non_ascii_character_folds_into_ascii_and_folding_is_idempotent() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let folded = fold_char(c);
            assert_eq!(fold_char(folded), folded, "U+{:04X}", u32::from(c));
            if !c.is_ascii() {
                assert!(!folded.is_ascii(), "U+{:04X}", u32::from(c));
            }
        }
    }
}
