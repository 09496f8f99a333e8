//! A small line diff, printed the way `diff -u` does, for `--check` failures.

use std::fmt::Write as _;

/// Lines of context shown around each change.
const CONTEXT: usize = 3;

/// Above this many line pairs the diff is not worth computing; only the first change is shown.
const MAX_CELLS: usize = 16_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Same,
    Removed,
    Added,
}

/// Returns a unified diff from `old` to `new` (labelled `old_name`, `new_name`), or an empty
/// string when they are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    if (a.len() + 1).saturating_mul(b.len() + 1) > MAX_CELLS {
        let first = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let _ = writeln!(
            out,
            "(files too large to diff; first difference at line {})",
            first + 1
        );
        return out;
    }
    let script = edit_script(&a, &b);
    for hunk in hunks(&script) {
        write_hunk(&mut out, &script[hunk.0..hunk.1], &a, &b);
    }
    if old.ends_with('\n') != new.ends_with('\n') {
        out.push_str("(the files differ in their final newline)\n");
    }
    out
}

/// One entry per line of the diff: the operation and the line's index in `a` and in `b`.
type Step = (Op, usize, usize);

/// A shortest edit script from `a` to `b`, by longest common subsequence.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Step> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut script = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            script.push((Op::Same, i, j));
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            script.push((Op::Removed, i, j));
            i += 1;
        } else {
            script.push((Op::Added, i, j));
            j += 1;
        }
    }
    script
}

/// Ranges of `script` to print: each change with `CONTEXT` unchanged lines around it, ranges
/// that touch merged.
fn hunks(script: &[Step]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (k, step) in script.iter().enumerate() {
        if step.0 == Op::Same {
            continue;
        }
        let start = k.saturating_sub(CONTEXT);
        let end = (k + 1 + CONTEXT).min(script.len());
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

fn write_hunk(out: &mut String, steps: &[Step], a: &[&str], b: &[&str]) {
    let old_len = steps.iter().filter(|s| s.0 != Op::Added).count();
    let new_len = steps.iter().filter(|s| s.0 != Op::Removed).count();
    let (_, i0, j0) = steps[0];
    let _ = writeln!(out, "@@ -{},{old_len} +{},{new_len} @@", i0 + 1, j0 + 1);
    for &(op, i, j) in steps {
        let _ = match op {
            Op::Same => writeln!(out, " {}", a[i]),
            Op::Removed => writeln!(out, "-{}", a[i]),
            Op::Added => writeln!(out, "+{}", b[j]),
        };
    }
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
}
