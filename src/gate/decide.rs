//! Whether a session may pass: pure, from the cookie's claims, the User as
//! the directory holds it now, and the policy's rules.

use std::sync::Arc;

use crate::directory::views::Person;
use crate::saml::session::{Session, SessionError};

/// Why a check refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No session cookie.
    NoSession,
    /// Tampered, signed with another key, or not a session.
    BadCookie(SessionError),
    /// A session of another policy.
    ForeignPolicy,
    /// The User is gone (deleted, being deleted, or never known here).
    UnknownUser,
    /// A User of that name exists but is another object (deleted and created again).
    Replaced,
    /// The User is deactivated.
    Inactive,
    /// The session was issued before the User's sessions-not-before time.
    Revoked,
    /// The User is in none of the policy's allowed groups.
    NotAllowed,
}

impl Denial {
    /// The label of `roster_gate_checks_total` and the logged reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NoSession => "no_session",
            Denial::BadCookie(SessionError::Expired) => "expired",
            Denial::BadCookie(SessionError::BadSignature) => "bad_signature",
            Denial::BadCookie(SessionError::NotASession) => "not_a_session",
            Denial::ForeignPolicy => "foreign_policy",
            Denial::UnknownUser => "unknown_user",
            Denial::Replaced => "replaced",
            Denial::Inactive => "inactive",
            Denial::Revoked => "revoked",
            Denial::NotAllowed => "not_allowed",
        }
    }

    /// Whether signing in again may help: it does when the session is
    /// missing, stale or ended; it doesn't when the directory says no (a
    /// deactivated user or one outside the allowed groups would loop
    /// through the IdP forever), so those get a refusal page.
    pub fn signs_in_again(&self) -> bool {
        !matches!(self, Denial::Inactive | Denial::NotAllowed)
    }
}

/// The policy's rules as a check reads them.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// Display names of the allowed groups; empty: any active user.
    pub allowed_groups: &'a [String],
    /// The policy's session lifetime now: shortening it ends older sessions.
    pub lifetime_secs: i64,
}

/// Checks an opened session against the User as known now (`None`: not
/// known) and its groups' display names. `now` is Unix seconds.
pub fn check(
    session: &Session,
    namespace: &str,
    policy: &str,
    person: Option<&Person>,
    groups: &[Arc<str>],
    rules: Rules<'_>,
    now: i64,
) -> Result<(), Denial> {
    if session.namespace != namespace || session.policy != policy {
        return Err(Denial::ForeignPolicy);
    }
    if now >= session.iat.saturating_add(rules.lifetime_secs) {
        return Err(Denial::BadCookie(SessionError::Expired));
    }
    let person = person.ok_or(Denial::UnknownUser)?;
    if *person.uid != *session.uid {
        return Err(Denial::Replaced);
    }
    if *person.policy != *policy {
        return Err(Denial::ForeignPolicy);
    }
    if !person.active {
        return Err(Denial::Inactive);
    }
    if person
        .sessions_not_before
        .is_some_and(|not_before| session.iat < not_before)
    {
        return Err(Denial::Revoked);
    }
    if !rules.allowed_groups.is_empty()
        && !groups
            .iter()
            .any(|g| rules.allowed_groups.iter().any(|a| **a == **g))
    {
        return Err(Denial::NotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::session::SESSION_TYPE;

    fn session() -> Session {
        Session {
            typ: SESSION_TYPE.into(),
            namespace: "team".into(),
            policy: "crm".into(),
            user: "u-1".into(),
            uid: "uid-1".into(),
            subject: "s".into(),
            iat: 1_000,
            exp: 4_600,
        }
    }

    fn person() -> Person {
        Person {
            policy: "crm".into(),
            uid: "uid-1".into(),
            user_name: "pat@example.com".into(),
            display_name: None,
            email: None,
            active: true,
            sessions_not_before: None,
            subject: None,
        }
    }

    const ANYONE: Rules<'static> = Rules {
        allowed_groups: &[],
        lifetime_secs: 3600,
    };

    fn run(person: Option<Person>, groups: &[&str], rules: Rules<'_>) -> Result<(), Denial> {
        let groups: Vec<Arc<str>> = groups.iter().map(|g| Arc::from(*g)).collect();
        check(
            &session(),
            "team",
            "crm",
            person.as_ref(),
            &groups,
            rules,
            2_000,
        )
    }

    #[test]
    fn an_active_known_user_passes() {
        assert_eq!(run(Some(person()), &[], ANYONE), Ok(()));
    }

    #[test]
    fn what_the_directory_says_now_refuses() {
        assert_eq!(run(None, &[], ANYONE), Err(Denial::UnknownUser));
        let replaced = Person {
            uid: "uid-2".into(),
            ..person()
        };
        assert_eq!(run(Some(replaced), &[], ANYONE), Err(Denial::Replaced));
        let inactive = Person {
            active: false,
            ..person()
        };
        assert_eq!(run(Some(inactive), &[], ANYONE), Err(Denial::Inactive));
        let other_policy = Person {
            policy: "wiki".into(),
            ..person()
        };
        assert_eq!(
            run(Some(other_policy), &[], ANYONE),
            Err(Denial::ForeignPolicy)
        );
    }

    #[test]
    fn sessions_issued_before_the_users_not_before_time_are_ended() {
        let at = |t| Person {
            sessions_not_before: Some(t),
            ..person()
        };
        assert_eq!(run(Some(at(1_001)), &[], ANYONE), Err(Denial::Revoked));
        assert_eq!(run(Some(at(1_000)), &[], ANYONE), Ok(()));
    }

    #[test]
    fn a_session_of_another_policy_or_namespace_is_refused() {
        let groups = [];
        assert_eq!(
            check(
                &session(),
                "team",
                "wiki",
                Some(&person()),
                &groups,
                ANYONE,
                2_000
            ),
            Err(Denial::ForeignPolicy)
        );
        assert_eq!(
            check(
                &session(),
                "other",
                "crm",
                Some(&person()),
                &groups,
                ANYONE,
                2_000
            ),
            Err(Denial::ForeignPolicy)
        );
    }

    #[test]
    fn a_shortened_lifetime_ends_older_sessions() {
        let short = Rules {
            lifetime_secs: 600,
            ..ANYONE
        };
        assert_eq!(
            run(Some(person()), &[], short),
            Err(Denial::BadCookie(SessionError::Expired))
        );
    }

    #[test]
    fn allowed_groups_admit_members_of_any_of_them_only() {
        let allowed = ["Admins".to_owned(), "Support".to_owned()];
        let rules = Rules {
            allowed_groups: &allowed,
            ..ANYONE
        };
        assert_eq!(run(Some(person()), &["Dev", "Support"], rules), Ok(()));
        assert_eq!(
            run(Some(person()), &["Dev"], rules),
            Err(Denial::NotAllowed)
        );
        assert_eq!(run(Some(person()), &[], rules), Err(Denial::NotAllowed));
    }

    #[test]
    fn only_missing_or_stale_sessions_send_the_browser_to_sign_in() {
        assert!(Denial::NoSession.signs_in_again());
        assert!(Denial::Revoked.signs_in_again());
        assert!(!Denial::Inactive.signs_in_again());
        assert!(!Denial::NotAllowed.signs_in_again());
    }
}
