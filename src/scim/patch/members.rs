//! Group members kept outside the group: member operations folded into a
//! [`MembersChange`] the store applies.

use super::*;

/// One member of a group, as a PATCH names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's id.
    pub value: String,
    /// `User` or `Group`, when the client said.
    pub r#type: Option<String>,
    pub display: Option<String>,
}

impl Member {
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            r#type: None,
            display: None,
        }
    }
}

/// What a PATCH does to a group's member set, without knowing the set. The
/// operations are folded in order, so the fields apply as: if `remove_all`,
/// or if `replace_all` is set, start from the empty set; then take the
/// members of `replace_all`; then remove the ids in `remove`; then add the
/// members in `add` (a member already present is updated). Folding keeps it
/// minimal: with `replace_all` set, `add` and `remove` are empty; with
/// `remove_all`, `remove` is empty; and no id is in both `add` and `remove`.
/// [`MembersChange::apply_to`] is that rule as code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembersChange {
    pub replace_all: Option<Vec<Member>>,
    pub add: Vec<Member>,
    pub remove: Vec<String>,
    pub remove_all: bool,
}

impl MembersChange {
    /// Whether the request left the members alone.
    pub fn is_empty(&self) -> bool {
        self.replace_all.is_none()
            && self.add.is_empty()
            && self.remove.is_empty()
            && !self.remove_all
    }

    /// The member set after this change, for callers that hold the whole
    /// set (small groups, tests).
    pub fn apply_to(&self, mut members: Vec<Member>) -> Vec<Member> {
        if self.remove_all {
            members.clear();
        }
        if let Some(all) = &self.replace_all {
            members = all.clone();
        }
        members.retain(|member| !self.remove.contains(&member.value));
        for member in &self.add {
            upsert(&mut members, member.clone());
        }
        members
    }

    pub(super) fn add_member(&mut self, member: Member) {
        self.remove.retain(|id| *id != member.value);
        match &mut self.replace_all {
            Some(all) => upsert(all, member),
            None => upsert(&mut self.add, member),
        }
    }

    pub(super) fn remove_member(&mut self, id: &str) {
        self.add.retain(|member| member.value != id);
        if let Some(all) = &mut self.replace_all {
            all.retain(|member| member.value != id);
            if all.is_empty() {
                self.clear_all();
            }
        } else if !self.remove_all && !self.remove.iter().any(|removed| removed == id) {
            self.remove.push(id.to_owned());
        }
    }

    pub(super) fn clear_all(&mut self) {
        *self = Self {
            remove_all: true,
            ..Self::default()
        };
    }

    pub(super) fn replace_members(&mut self, members: Vec<Member>) {
        let mut all = Vec::new();
        for member in members {
            upsert(&mut all, member);
        }
        if all.is_empty() {
            self.clear_all();
        } else {
            *self = Self {
                replace_all: Some(all),
                ..Self::default()
            };
        }
    }
}

/// Adds a member, or updates the one with the same id.
pub(super) fn upsert(members: &mut Vec<Member>, member: Member) {
    match members.iter_mut().find(|m| m.value == member.value) {
        Some(existing) => *existing = member,
        None => members.push(member),
    }
}

/// A member operation of [`apply_group`], folded into `change`.
pub(super) fn members_operation(
    change: &mut MembersChange,
    kind: OpKind,
    target: &PatchTarget,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let members = target.attribute.attribute;
    if target.attribute.sub_attribute.is_some() {
        return Err(ScimError::invalid_path(
            "members are added, removed or replaced whole; their sub-attributes cannot be patched one by one",
        ));
    }
    match (&target.filter, kind) {
        // Okta: `remove members[value eq "a"]`; Entra's newer dialect too.
        (Some(filter), OpKind::Remove) => {
            for id in member_ids_selected_by(filter)? {
                change.remove_member(id);
            }
        }
        (Some(_), _) => {
            return Err(ScimError::invalid_path(
                "a filtered `members` path can only be removed; add or replace members with `path: members`",
            ));
        }
        (None, OpKind::Add) => {
            for member in parse_members(members, required_value(value)?)? {
                change.add_member(member);
            }
        }
        // Okta replaces the whole set with `replace members`.
        (None, OpKind::Replace) => {
            change.replace_members(parse_members(members, required_value(value)?)?)
        }
        (None, OpKind::Remove) => match value {
            None | Some(Value::Null) => change.clear_all(),
            // Entra's default dialect: remove only the listed members.
            Some(listed) => {
                for member in parse_members(members, listed)? {
                    change.remove_member(&member.value);
                }
            }
        },
    }
    Ok(())
}

/// The ids of `members[value eq "a"]` or `members[value eq "a" or value eq
/// "b"]`: the only member filters a store can apply without the member list.
pub(super) fn member_ids_selected_by(filter: &Filter) -> Result<Vec<&str>, ScimError> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if path.urn.is_none()
            && path.sub_attribute.is_none()
            && path.name.eq_ignore_ascii_case("value") =>
        {
            Ok(vec![id])
        }
        Filter::Or(left, right) => {
            let mut ids = member_ids_selected_by(left)?;
            ids.extend(member_ids_selected_by(right)?);
            Ok(ids)
        }
        _ => Err(ScimError::invalid_filter(format!(
            "members can be selected only by id: `members[value eq \"<id>\"]`, or several joined with `or`; [{filter}] is not supported"
        ))),
    }
}

pub(super) fn parse_members(
    members: &'static Attribute,
    value: &Value,
) -> Result<Vec<Member>, ScimError> {
    let Value::Array(elements) = normalize(members, value)? else {
        return Ok(Vec::new());
    };
    let text = |element: &Value, name: &str| {
        get_ignore_case(element, name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut parsed = Vec::with_capacity(elements.len());
    for element in elements {
        let element = new_value(members, element)?;
        if !is_assigned(&element) {
            continue;
        }
        let value = text(&element, "value").ok_or_else(|| {
            ScimError::invalid_value("each member needs a `value`: the id of the user or group")
        })?;
        parsed.push(Member {
            value,
            r#type: text(&element, "type"),
            display: text(&element, "display"),
        });
    }
    Ok(parsed)
}
