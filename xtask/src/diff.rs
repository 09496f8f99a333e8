//! The unified diff (`diff -u`'s form) that `--check` failures print, from `similar`.

/// Lines of context shown around each change.
const CONTEXT: usize = 3;

/// Returns a unified diff from `old` to `new` (labelled `old_name`, `new_name`), or an empty
/// string when they are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(CONTEXT)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn equal_texts_give_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn one_changed_line_shows_with_its_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let expected = "--- old\n+++ new\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n";
        assert_eq!(unified(old, new, "old", "new"), expected);
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new: String = (1..=20)
            .filter(|&n| n != 19)
            .map(|n| {
                if n == 2 {
                    "two\n".to_owned()
                } else {
                    format!("{n}\n")
                }
            })
            .collect();
        let diff = unified(&old, &new, "old", "new");
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(diff.contains("-2\n+two\n"), "{diff}");
        assert!(diff.contains("-19\n"), "{diff}");
    }

    #[test]
    fn a_missing_final_newline_is_shown() {
        let diff = unified("a\nb\n", "a\nb", "old", "new");
        assert!(diff.contains("No newline at end of file"), "{diff}");
    }
}
