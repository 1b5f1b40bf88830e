//! "Did you mean": the closest known name to a misspelt one.

/// The candidate closest to `name` by edit distance, when it is close enough
/// to be a plausible typo: at most a third of the name's length (at least 1),
/// and never the whole name (`c` is not a typo of `a`).
pub fn closest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let len = name.chars().count();
    let limit = (len / 3).max(1).min(len.saturating_sub(1));
    if limit == 0 {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let bound = best.map_or(limit, |(d, _)| d.saturating_sub(1));
        if c.len().abs_diff(name.len()) > bound {
            continue;
        }
        if let Some(d) = distance(name, c, bound)
            && best.is_none_or(|(bd, _)| d < bd)
        {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Formats a hint for [`closest`].
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent
/// transpositions), or `None` when it exceeds `bound`.
fn distance(a: &str, b: &str, bound: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut prev2 = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > bound {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    (d <= bound).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_transpositions() {
        let names = ["research", "analyze", "decompose"];
        assert_eq!(closest("reserch", names), Some("research"));
        assert_eq!(closest("anaylze", names), Some("analyze"));
        assert_eq!(closest("synthesize", names), None);
        assert_eq!(
            closest("dependson", ["depends_on", "id"]),
            Some("depends_on")
        );
    }

    #[test]
    fn short_names_allow_one_edit() {
        assert_eq!(closest("t1", ["t2", "x9"]), Some("t2"));
        assert_eq!(closest("ab", ["xy"]), None);
        assert_eq!(closest("c", ["a"]), None);
    }
}
