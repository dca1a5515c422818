//! The seed's formatting.test.ts cases for reply clean-up.

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn strip_internal_tags_cases() {
    assert_eq!(
        strip_internal_tags("<internal>secret</internal> hello"),
        "hello"
    );
    assert_eq!(
        strip_internal_tags("<internal>\nline1\nline2\n</internal>hello"),
        "hello"
    );
    assert_eq!(
        strip_internal_tags("hello <internal>a</internal> world <internal>b</internal>"),
        "hello  world"
    );
    assert_eq!(strip_internal_tags("<internal>only</internal>"), "");
    // An unterminated block is left as is (non-greedy match needs a closing tag).
    assert_eq!(strip_internal_tags("a <internal>b"), "a <internal>b");
}

#[test]
fn format_outbound_cases() {
    assert_eq!(format_outbound("hello world"), "hello world");
    assert_eq!(format_outbound("<internal>x</internal>"), "");
    assert_eq!(
        format_outbound("<internal>thinking</internal>The answer is 42"),
        "The answer is 42"
    );
}
