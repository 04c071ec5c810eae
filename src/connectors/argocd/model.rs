//! What the Argo CD RBAC connector keeps in its ConfigMap key, and the
//! policy lines it renders. Pure: no I/O.
//!
//! Argo CD has no accounts, so the key records what Roster provisioned,
//! in comment lines Argo CD skips (`#roster,user,…`, `#roster,group,…`,
//! `#roster,member,…`), followed by the lines Argo CD reads: one
//! `g,"<userName>",<role>` per active member of a mapped group and role.
//! Record and lines are written together in one value, so they never
//! disagree; the lines are always rendered from the record, so a hand
//! edit of them is undone by the next write.
//!
//! One malformed line makes Argo CD refuse the whole policy, so every value
//! that reaches a line is checked (no line breaks, no surrounding spaces)
//! and every rendered line is read back as Argo CD's CSV reader would.

use std::collections::{BTreeMap, BTreeSet};

/// The prefix of the record's lines.
const RECORD: &str = "#roster,";

/// An Argo CD subject Roster provisioned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The userName: what Argo CD matches against the token's claims.
    pub subject: String,
    pub active: bool,
}

/// What Roster provisioned, keyed by the User's and Group's ids (stable
/// across renames).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub users: BTreeMap<String, Account>,
    /// Group id -> displayName.
    pub groups: BTreeMap<String, String>,
    /// (group id, user id).
    pub members: BTreeSet<(String, String)>,
}

/// One change a connector call makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    PutUser {
        id: String,
        subject: String,
        active: bool,
    },
    DisableUser {
        id: String,
    },
    DeleteUser {
        id: String,
    },
    PutGroup {
        id: String,
        display_name: String,
    },
    DeleteGroup {
        id: String,
    },
    Members {
        group: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
}

/// Why a change was refused; the record is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0:?} can't be an Argo CD subject: {1}")]
    InvalidValue(String, &'static str),
    #[error("no such {0} in Argo CD's RBAC: {1}")]
    NotFound(&'static str, String),
    #[error(
        "the Argo CD RBAC key is full: with the changes written together it would hold {0} bytes, over {1}; changes that take access away are still written"
    )]
    Full(usize, usize),
}

/// Whether `value` can appear in a policy line or the record: a line break
/// would start a line Argo CD can't read, and Argo CD's reader trims
/// leading spaces, so a value must not depend on them.
fn check(value: &str) -> Result<(), Refusal> {
    let invalid = |why| Err(Refusal::InvalidValue(value.to_owned(), why));
    if value.is_empty() {
        return invalid("empty");
    }
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return invalid("contains a line break or NUL");
    }
    if value.trim() != value {
        return invalid("starts or ends with whitespace");
    }
    Ok(())
}

/// A CSV field, quoted (RFC 4180: a quote is doubled).
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// One CSV line's fields, as Argo CD's reader (Go's encoding/csv) reads
/// the lines Roster writes; `None` if it is not one well-formed record.
/// The reader is the `csv` crate's core with its defaults, built once per
/// thread: building one (its DFA) costs more than reading a line.
fn fields(line: &str) -> Option<Vec<String>> {
    use csv_core::ReadRecordResult::*;
    thread_local! {
        static READER: std::cell::RefCell<csv_core::Reader> =
            std::cell::RefCell::new(csv_core::Reader::new());
    }
    READER.with_borrow_mut(|reader| {
        reader.reset();
        // Unquoting only shrinks a field; a line has at most one field
        // more than it has bytes.
        let mut output = vec![0; line.len()];
        let mut ends = vec![0; line.len() + 1];
        let (mut input, mut written, mut fields) = (line.as_bytes(), 0, 0);
        let mut records = 0;
        loop {
            let (result, read, out, end) =
                reader.read_record(input, &mut output[written..], &mut ends[fields..]);
            input = &input[read..];
            written += out;
            fields += end;
            match result {
                // All of the line is read: the next call says it ends.
                InputEmpty => {}
                Record => {
                    records += 1;
                    if records > 1 {
                        return None;
                    }
                }
                End => break,
                OutputFull | OutputEndsFull => return None,
            }
        }
        if records != 1 {
            return None;
        }
        let mut start = 0;
        ends[..fields]
            .iter()
            .map(|&end| {
                let field = std::str::from_utf8(&output[start..end])
                    .ok()
                    .map(str::to_owned);
                start = end;
                field
            })
            .collect()
    })
}

impl Record {
    /// Reads the record from the key's value; other lines are ignored (they
    /// are rendered from it).
    pub fn parse(text: &str) -> Self {
        let mut record = Self::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(RECORD) else {
                continue;
            };
            let Some(fields) = fields(rest) else {
                continue;
            };
            match fields.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["user", id, subject, state] => {
                    record.users.insert(
                        id.to_owned(),
                        Account {
                            subject: subject.to_owned(),
                            active: state == "active",
                        },
                    );
                }
                ["group", id, display_name] => {
                    record.groups.insert(id.to_owned(), display_name.to_owned());
                }
                ["member", group, user] => {
                    record.members.insert((group.to_owned(), user.to_owned()));
                }
                _ => {}
            }
        }
        record
    }

    /// Applies `change`, or refuses it and changes nothing.
    pub fn apply(&mut self, change: &Change) -> Result<(), Refusal> {
        match change {
            Change::PutUser {
                id,
                subject,
                active,
            } => {
                check(id)?;
                check(subject)?;
                self.users.insert(
                    id.clone(),
                    Account {
                        subject: subject.clone(),
                        active: *active,
                    },
                );
            }
            Change::DisableUser { id } => {
                let account = self
                    .users
                    .get_mut(id)
                    .ok_or_else(|| Refusal::NotFound("user", id.clone()))?;
                account.active = false;
            }
            Change::DeleteUser { id } => {
                self.users.remove(id);
                self.members.retain(|(_, user)| user != id);
            }
            Change::PutGroup { id, display_name } => {
                check(id)?;
                check(display_name)?;
                self.groups.insert(id.clone(), display_name.clone());
            }
            Change::DeleteGroup { id } => {
                self.groups.remove(id);
                self.members.retain(|(group, _)| group != id);
            }
            Change::Members { group, add, remove } => {
                if !self.groups.contains_key(group) {
                    return Err(Refusal::NotFound("group", group.clone()));
                }
                for user in add {
                    check(user)?;
                }
                for user in remove {
                    self.members.remove(&(group.clone(), user.clone()));
                }
                for user in add {
                    self.members.insert((group.clone(), user.clone()));
                }
            }
        }
        Ok(())
    }

    /// The id of the user whose subject is `user_name` (as userNames
    /// compare: case-insensitively).
    pub fn user_named(&self, user_name: &str) -> Option<(&str, &Account)> {
        let folded = crate::identity::fold_user_name(user_name);
        self.users
            .iter()
            .find(|(_, account)| crate::identity::fold_user_name(&account.subject) == folded)
            .map(|(id, account)| (id.as_str(), account))
    }

    /// The id of the group called `display_name`.
    pub fn group_named(&self, display_name: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(_, name)| *name == display_name)
            .map(|(id, _)| id.as_str())
    }

    /// The (subject, role) pairs Argo CD should hold: each active member of
    /// each group `roles` maps, once per role.
    pub fn grants<'a>(
        &'a self,
        roles: &'a BTreeMap<String, Vec<String>>,
    ) -> BTreeSet<(&'a str, &'a str)> {
        self.members
            .iter()
            .filter_map(|(group, user)| {
                let roles = roles.get(self.groups.get(group)?)?;
                let account = self.users.get(user).filter(|a| a.active)?;
                Some(
                    roles
                        .iter()
                        .map(|role| (account.subject.as_str(), role.as_str())),
                )
            })
            .flatten()
            .collect()
    }

    /// The key's value: `header` (comment lines), the record, then the
    /// policy lines. Errors if a line would not read back as written.
    pub fn render(
        &self,
        header: &str,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Result<String, Refusal> {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        for (id, account) in &self.users {
            let state = if account.active { "active" } else { "disabled" };
            out.push_str(&format!(
                "{RECORD}user,{id},{},{state}\n",
                quoted(&account.subject)
            ));
        }
        for (id, display_name) in &self.groups {
            out.push_str(&format!("{RECORD}group,{id},{}\n", quoted(display_name)));
        }
        for (group, user) in &self.members {
            out.push_str(&format!("{RECORD}member,{group},{user}\n"));
        }
        for (subject, role) in self.grants(roles) {
            check(role)?;
            let line = format!("g,{},{role}", quoted(subject));
            if fields(&line).as_deref() != Some(&["g".to_owned(), subject.into(), role.into()]) {
                return Err(Refusal::InvalidValue(line, "does not read back as written"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    }
}

impl Change {
    /// The change as [`fit`] weighs it: a member change that both adds and
    /// removes is its removal, then its addition; any other is itself.
    fn parts(&self) -> Vec<Change> {
        match self {
            Change::Members { group, add, remove } if !add.is_empty() && !remove.is_empty() => {
                let members = |add: &[String], remove: &[String]| Change::Members {
                    group: group.clone(),
                    add: add.to_vec(),
                    remove: remove.to_vec(),
                };
                vec![members(&[], remove), members(add, &[])]
            }
            other => vec![other.clone()],
        }
    }

    /// Whether the change may add lines to the key: anything but taking
    /// access away (a disable, a deletion, a member removal).
    fn may_grow(&self, base: &Record) -> bool {
        match self {
            Change::PutUser { id, active, .. } => *active || !base.users.contains_key(id),
            Change::PutGroup { .. } => true,
            Change::Members { add, .. } => !add.is_empty(),
            Change::DisableUser { .. } | Change::DeleteUser { .. } | Change::DeleteGroup { .. } => {
                false
            }
        }
    }
}

/// What a batch of changes makes of the key.
#[derive(Debug)]
pub struct Fitted {
    /// The value to write, or why none can be rendered.
    pub value: Result<String, Refusal>,
    /// Per change, in order: why it was left out, if it was.
    pub refusals: Vec<Option<Refusal>>,
}

/// Applies `changes` to `base` and renders the key, within `limit` bytes.
/// When the whole batch would not fit, every change that takes access
/// away is still applied (a full key never holds up deprovisioning, and
/// those only shrink it: a disable adds two bytes at most), and of the
/// others the longest run, in order, that fits; the rest are refused as
/// [`Refusal::Full`] and come back with their callers' retries. A member
/// change that both adds and removes is taken as its removal, then its
/// addition: the removal is applied even when the addition is refused.
pub fn fit(
    base: &Record,
    changes: &[Change],
    header: &str,
    roles: &BTreeMap<String, Vec<String>>,
    limit: usize,
) -> Fitted {
    let (owners, parts): (Vec<usize>, Vec<Change>) = changes
        .iter()
        .enumerate()
        .flat_map(|(i, change)| change.parts().into_iter().map(move |part| (i, part)))
        .unzip();
    let fitted = fit_parts(base, &parts, header, roles, limit);
    let mut refusals = vec![None; changes.len()];
    for (owner, refusal) in owners.into_iter().zip(fitted.refusals) {
        if refusals[owner].is_none() {
            refusals[owner] = refusal;
        }
    }
    Fitted {
        value: fitted.value,
        refusals,
    }
}

/// [`fit`], each change taken whole.
fn fit_parts(
    base: &Record,
    changes: &[Change],
    header: &str,
    roles: &BTreeMap<String, Vec<String>>,
    limit: usize,
) -> Fitted {
    // With the changes `admit` says yes to, in order.
    let with = |admit: &dyn Fn(usize) -> bool| {
        let mut record = base.clone();
        let refusals: Vec<Option<Refusal>> = changes
            .iter()
            .enumerate()
            .map(|(i, change)| admit(i).then(|| record.apply(change).err()).flatten())
            .collect();
        Fitted {
            value: record.render(header, roles),
            refusals,
        }
    };
    let whole = with(&|_| true);
    let size = match &whole.value {
        Ok(value) if value.len() > limit => value.len(),
        _ => return whole,
    };
    let growing: Vec<usize> = (0..changes.len())
        .filter(|&i| changes[i].may_grow(base))
        .collect();
    let first = |k: usize| {
        let (admitted, growing) = (&growing[..k], &growing);
        move |i: usize| growing.binary_search(&i).is_err() || admitted.binary_search(&i).is_ok()
    };
    let fits = |fitted: &Fitted| fitted.value.as_ref().is_ok_and(|v| v.len() <= limit);
    // The first `low` growing changes fit (none: taken to); all do not.
    let (mut low, mut high) = (0, growing.len());
    let mut best = with(&first(0));
    while high - low > 1 {
        let middle = (low + high) / 2;
        let fitted = with(&first(middle));
        if fits(&fitted) {
            (low, best) = (middle, fitted);
        } else {
            high = middle;
        }
    }
    for &i in &growing[low..] {
        best.refusals[i] = Some(Refusal::Full(size, limit));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> BTreeMap<String, Vec<String>> {
        [
            ("Platform".to_owned(), vec!["role:admin".to_owned()]),
            (
                "Readers".to_owned(),
                vec!["role:readonly".to_owned(), "role:audit".to_owned()],
            ),
        ]
        .into()
    }

    fn put_user(id: &str, subject: &str) -> Change {
        Change::PutUser {
            id: id.into(),
            subject: subject.into(),
            active: true,
        }
    }

    fn members(group: &str, add: &[&str], remove: &[&str]) -> Change {
        Change::Members {
            group: group.into(),
            add: add.iter().map(|s| s.to_string()).collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn policy_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    /// A record holding only the Platform group, `g1`.
    fn with_platform() -> Record {
        let mut record = Record::default();
        record
            .apply(&Change::PutGroup {
                id: "g1".into(),
                display_name: "Platform".into(),
            })
            .unwrap();
        record
    }

    /// A record of `n` users, all in the Platform group (role:admin).
    fn platform_of(n: usize) -> Record {
        let mut record = with_platform();
        for i in 0..n {
            record
                .apply(&put_user(&format!("u{i}"), &format!("user{i}@example.com")))
                .unwrap();
            record
                .apply(&members("g1", &[&format!("u{i}")], &[]))
                .unwrap();
        }
        record
    }

    #[test]
    fn a_batch_that_fits_is_applied_whole() {
        let base = platform_of(3);
        let batch = [
            put_user("u9", "new@example.com"),
            members("g1", &["u9"], &[]),
        ];
        let fitted = fit(&base, &batch, "h", &roles(), 1 << 20);
        assert_eq!(fitted.refusals, vec![None, None]);
        assert!(
            fitted
                .value
                .unwrap()
                .contains("g,\"new@example.com\",role:admin")
        );
    }

    #[test]
    fn a_full_key_takes_access_away_and_admits_the_growth_that_fits_in_order() {
        let base = platform_of(20);
        let limit = base.render("h", &roles()).unwrap().len() + 150;
        let mut batch = Vec::new();
        for i in 100..110 {
            batch.push(put_user(&format!("u{i}"), &format!("user{i}@example.com")));
        }
        // Access taken away, in the middle of the growth.
        batch.insert(3, Change::DisableUser { id: "u0".into() });
        batch.insert(5, Change::DeleteUser { id: "u1".into() });
        batch.insert(7, members("g1", &[], &["u2"]));
        let fitted = fit(&base, &batch, "h", &roles(), limit);
        let value = fitted.value.unwrap();
        assert!(value.len() <= limit, "{} over {limit}", value.len());
        let lines = policy_lines(&value);
        for gone in ["user0@", "user1@", "user2@"] {
            assert!(
                !lines.iter().any(|l| l.contains(gone)),
                "{gone} still granted"
            );
        }
        assert!(!value.contains("user1@"), "deleted from the record too");
        // Each taken-away change was applied; the growth is a prefix.
        for i in [3, 5, 7] {
            assert_eq!(fitted.refusals[i], None);
        }
        let admitted: Vec<bool> = fitted
            .refusals
            .iter()
            .enumerate()
            .filter(|(i, _)| ![3, 5, 7].contains(i))
            .map(|(_, r)| r.is_none())
            .collect();
        let kept = admitted.iter().take_while(|a| **a).count();
        assert!(kept > 0 && kept < admitted.len(), "{admitted:?}");
        assert!(admitted[kept..].iter().all(|a| !a), "{admitted:?}");
        for (i, refusal) in fitted.refusals.iter().enumerate() {
            if let Some(refusal) = refusal {
                assert!(
                    matches!(refusal, Refusal::Full(_, l) if *l == limit),
                    "{i}: {refusal}"
                );
            }
        }
        // What was admitted is in the value; what was refused is not.
        let record = Record::parse(&value);
        for (i, change) in batch.iter().enumerate() {
            if let Change::PutUser { id, .. } = change {
                assert_eq!(
                    record.users.contains_key(id),
                    fitted.refusals[i].is_none(),
                    "{id}"
                );
            }
        }
    }

    #[test]
    fn in_a_full_key_a_member_change_still_removes_what_it_removes() {
        let base = platform_of(5);
        let limit = base.render("h", &roles()).unwrap().len();
        let batch = [
            put_user("u7", "seven@example.com"),
            members("g1", &["u7"], &["u3"]),
        ];
        let fitted = fit(&base, &batch, "h", &roles(), limit);
        assert!(matches!(fitted.refusals[1], Some(Refusal::Full(..))));
        let value = fitted.value.unwrap();
        assert!(!policy_lines(&value).iter().any(|l| l.contains("user3@")));
        assert!(
            !Record::parse(&value)
                .members
                .contains(&("g1".into(), "u3".into()))
        );
    }

    #[test]
    fn with_no_room_at_all_access_is_still_taken_away() {
        let base = platform_of(5);
        let limit = base.render("h", &roles()).unwrap().len();
        let batch = [
            put_user("u7", "seven@example.com"),
            Change::DisableUser { id: "u4".into() },
        ];
        let fitted = fit(&base, &batch, "h", &roles(), limit);
        assert!(matches!(fitted.refusals[0], Some(Refusal::Full(..))));
        assert_eq!(fitted.refusals[1], None);
        let value = fitted.value.unwrap();
        assert!(!policy_lines(&value).iter().any(|l| l.contains("user4@")));
        assert!(!value.contains("seven@"));
    }

    #[test]
    fn lines_follow_members_roles_and_the_active_state_and_the_record_reads_back() {
        let mut record = Record::default();
        for change in [
            put_user("u1", "ada@example.com"),
            put_user("u2", "Grace \"Amazing\", Hopper"),
            put_user("u3", "alan@example.com"),
            Change::PutGroup {
                id: "g1".into(),
                display_name: "Platform".into(),
            },
            Change::PutGroup {
                id: "g2".into(),
                display_name: "Readers".into(),
            },
            Change::PutGroup {
                id: "g3".into(),
                display_name: "Unmapped".into(),
            },
            members("g1", &["u1", "u2"], &[]),
            members("g2", &["u1", "u3"], &[]),
            members("g3", &["u3"], &[]),
        ] {
            record.apply(&change).unwrap();
        }
        let text = record.render("Managed by Roster", &roles()).unwrap();
        assert_eq!(
            policy_lines(&text),
            [
                r#"g,"Grace ""Amazing"", Hopper",role:admin"#,
                r#"g,"ada@example.com",role:admin"#,
                r#"g,"ada@example.com",role:audit"#,
                r#"g,"ada@example.com",role:readonly"#,
                r#"g,"alan@example.com",role:audit"#,
                r#"g,"alan@example.com",role:readonly"#,
            ]
        );
        assert!(text.starts_with("# Managed by Roster\n"));
        assert_eq!(Record::parse(&text), record);

        // Disabled: no line, but still recorded (re-enabling restores them).
        record
            .apply(&Change::DisableUser { id: "u1".into() })
            .unwrap();
        let text = record.render("", &roles()).unwrap();
        assert!(!text.contains(r#"g,"ada@example.com""#));
        record.apply(&put_user("u1", "ada@example.com")).unwrap();
        assert_eq!(record.grants(&roles()).len(), 6);

        // Removal from one group keeps the roles another group gives.
        record.apply(&members("g2", &[], &["u1"])).unwrap();
        let roles = roles();
        let grants = record.grants(&roles);
        assert!(grants.contains(&("ada@example.com", "role:admin")));
        assert!(!grants.contains(&("ada@example.com", "role:readonly")));

        // Deletions take the memberships with them; twice is fine.
        for _ in 0..2 {
            record
                .apply(&Change::DeleteUser { id: "u3".into() })
                .unwrap();
            record
                .apply(&Change::DeleteGroup { id: "g1".into() })
                .unwrap();
        }
        assert_eq!(
            record.members,
            BTreeSet::new(),
            "u1 was only left in g1, deleted"
        );
        assert_eq!(record.user_named("ADA@example.com").unwrap().0, "u1");
        assert_eq!(record.group_named("Readers"), Some("g2"));
    }

    #[test]
    fn values_that_would_break_argo_cds_policy_are_refused_and_change_nothing() {
        let mut record = with_platform();
        let before = record.clone();
        for bad in ["ada\n@example.com", " ada", "ada ", "", "a\rb"] {
            assert!(matches!(
                record.apply(&put_user("u1", bad)),
                Err(Refusal::InvalidValue(..))
            ));
        }
        assert!(matches!(
            record.apply(&members("g-gone", &["u1"], &[])),
            Err(Refusal::NotFound("group", _))
        ));
        assert!(matches!(
            record.apply(&Change::DisableUser {
                id: "nobody".into()
            }),
            Err(Refusal::NotFound("user", _))
        ));
        assert_eq!(record, before);
        // A role with a line break (the CRD refuses it too) fails the render.
        record.apply(&put_user("u1", "ada")).unwrap();
        record.apply(&members("g1", &["u1"], &[])).unwrap();
        let broken = [(
            "Platform".to_owned(),
            vec!["role:x\ng, mallory, role:admin".to_owned()],
        )]
        .into();
        assert!(record.render("", &broken).is_err());
    }

    #[test]
    fn lines_written_by_hand_are_not_part_of_the_record() {
        let text =
            "# header\n#roster,user,u1,\"ada\",active\ng, mallory, role:admin\n#roster,bogus\n";
        let record = Record::parse(text);
        assert_eq!(record.users.len(), 1);
        let rendered = record.render("header", &roles()).unwrap();
        assert!(!rendered.contains("mallory"));
    }

    /// The fields the `csv` crate reads from `line`, when it reads exactly
    /// one record (what `fields` must agree with).
    fn csv_crate_fields(line: &str) -> Option<Vec<String>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_bytes());
        let mut records = reader.records();
        let record = records.next()?.ok()?;
        if records.next().is_some() {
            return None;
        }
        Some(record.iter().map(str::to_owned).collect())
    }

    proptest::proptest! {
        #[test]
        fn fields_reads_a_line_as_the_csv_crate_does(
            line in "[a-c,\" \r\\n]{0,12}|(g|#roster),\"[a-z\" ,]{0,8}\",[a-z:\"]{0,8}",
        ) {
            proptest::prop_assert_eq!(fields(&line), csv_crate_fields(&line), "{:?}", line);
        }
    }
}
