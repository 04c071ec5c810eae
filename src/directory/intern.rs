//! Shared copies of the few strings 100,000 cached objects repeat (policy
//! names): one allocation per distinct value instead of one per object.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use serde::{Deserialize, Deserializer};

/// Distinct values kept at most; past it, values are no longer shared (so a
/// flood of distinct names costs what it would without interning).
const MAX_VALUES: usize = 10_000;

static VALUES: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Default::default);

/// The shared copy of `value`.
pub fn intern(value: &str) -> Arc<str> {
    let mut values = VALUES.lock().expect("intern lock");
    if let Some(shared) = values.get(value) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(value);
    if values.len() < MAX_VALUES {
        values.insert(shared.clone());
    }
    shared
}

/// Deserializes a string as its shared copy.
pub fn interned<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
    let value = std::borrow::Cow::<str>::deserialize(deserializer)?;
    Ok(intern(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation() {
        let a = intern("crm-intern-test");
        let b = intern(&String::from("crm-intern-test"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "crm-intern-test");
        #[derive(Deserialize)]
        struct Spec {
            #[serde(deserialize_with = "interned")]
            policy: Arc<str>,
        }
        let spec: Spec = serde_json::from_str(r#"{"policy":"crm-intern-test"}"#).unwrap();
        assert!(Arc::ptr_eq(&spec.policy, &a));
    }
}
