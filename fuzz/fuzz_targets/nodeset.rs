//! Any text as a host set (`-w`): expanding must not panic, stays within
//! its limit and gives valid names once each; where it expands, folding
//! the names and expanding again gives the same names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mln::fabric::config::{expand_nodeset, fold_nodeset, MAX_NODESET};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else { return };
    let names = match expand_nodeset(spec) {
        Ok(n) => n,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    assert!(!names.is_empty() && names.len() as u64 <= MAX_NODESET, "{spec:?}: {} names", names.len());
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "{spec:?}: a name twice");
    for n in &names {
        assert!(mln::name::check(mln::name::NameKind::ServiceHost, n).is_ok(), "{spec:?}: {n:?}");
    }
    let folded = fold_nodeset(&names);
    let again = expand_nodeset(&folded).unwrap_or_else(|e| panic!("{spec:?} folds to {folded:?}, which does not expand: {e}"));
    let mut back = again.clone();
    back.sort();
    assert_eq!(back, sorted, "{spec:?} folds to {folded:?}, which expands to other names");
});
