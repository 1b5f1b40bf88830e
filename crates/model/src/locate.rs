//! Maps JSON paths back to lines and columns of the source text.
//!
//! Parsing keeps no positions (that would slow the common, valid case); when
//! a document has diagnostics, the text is walked once more and every path
//! asked for is resolved together.

use std::collections::{HashMap, HashSet};

use serde_saphyr::granit_parser::{Event, Parser};

use crate::diag::{Location, Path, Seg};

/// Resolves `paths` in a JSON text. A path that is not found resolves to its
/// longest prefix that is. Keys resolve to the key, indexes to the element.
pub(crate) fn json(text: &str, paths: &[&Path]) -> Vec<Option<Location>> {
    let wanted = prefixes(paths);
    let mut w = JsonWalk {
        text: text.as_bytes(),
        pos: 0,
        wanted: &wanted,
        found: HashMap::new(),
        path: Vec::new(),
    };
    w.value(0);
    let lines = LineIndex::new(text);
    resolve(paths, &w.found, |&offset| lines.location(text, offset))
}

/// Resolves `paths` in a YAML text; see [`json`].
pub(crate) fn yaml(text: &str, paths: &[&Path]) -> Vec<Option<Location>> {
    let wanted = prefixes(paths);
    let found = yaml_walk(text, &wanted);
    resolve(paths, &found, |&loc| loc)
}

fn prefixes(paths: &[&Path]) -> HashSet<Vec<Seg>> {
    let mut set = HashSet::new();
    for p in paths {
        for len in 0..=p.0.len() {
            set.insert(p.0[..len].to_vec());
        }
    }
    set
}

fn resolve<T>(
    paths: &[&Path],
    found: &HashMap<Vec<Seg>, T>,
    to_location: impl Fn(&T) -> Location,
) -> Vec<Option<Location>> {
    paths
        .iter()
        .map(|p| {
            (0..=p.0.len())
                .rev()
                .find_map(|len| found.get(&p.0[..len]))
                .map(&to_location)
        })
        .collect()
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    fn location(&self, text: &str, offset: usize) -> Location {
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Location {
            line: line + 1,
            column,
        }
    }
}

struct JsonWalk<'a> {
    text: &'a [u8],
    pos: usize,
    wanted: &'a HashSet<Vec<Seg>>,
    found: HashMap<Vec<Seg>, usize>,
    path: Vec<Seg>,
}

impl JsonWalk<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn mark(&mut self) {
        if self.wanted.contains(&self.path) && !self.found.contains_key(&self.path) {
            self.found.insert(self.path.clone(), self.pos);
        }
    }

    /// Walks one value; `depth` guards the stack on hostile input (parsing
    /// already limits nesting, so this is belt and braces).
    fn value(&mut self, depth: usize) {
        self.skip_ws();
        self.mark();
        if depth > 256 || self.pos >= self.text.len() {
            return;
        }
        // Only descend where something is wanted; skip the rest quickly.
        let descend = self.wanted.contains(&self.path);
        match self.text[self.pos] {
            b'{' => {
                self.pos += 1;
                loop {
                    self.skip_ws();
                    match self.text.get(self.pos) {
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(b'"') => {
                            let key_at = self.pos;
                            let key = self.string();
                            self.skip_ws();
                            if self.text.get(self.pos) == Some(&b':') {
                                self.pos += 1;
                            }
                            if descend {
                                self.path.push(Seg::Key(key));
                                let cur = self.pos;
                                self.pos = key_at;
                                self.mark();
                                self.pos = cur;
                                self.value(depth + 1);
                                self.path.pop();
                            } else {
                                self.skip_value();
                            }
                        }
                        _ => return,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.skip_ws();
                    match self.text.get(self.pos) {
                        Some(b']') | None => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => {
                            if descend {
                                self.path.push(Seg::Index(index));
                                self.value(depth + 1);
                                self.path.pop();
                            } else {
                                self.skip_value();
                            }
                            index += 1;
                        }
                    }
                }
            }
            _ => self.skip_value(),
        }
    }

    /// Skips one value without tracking paths.
    fn skip_value(&mut self) {
        self.skip_ws();
        let mut depth = 0usize;
        while self.pos < self.text.len() {
            match self.text[self.pos] {
                b'"' => {
                    self.string_end();
                    if depth == 0 {
                        return;
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return;
                    }
                }
                b',' if depth == 0 => return,
                _ => {}
            }
            self.pos += 1;
        }
    }

    fn string_end(&mut self) {
        self.pos += 1;
        while self.pos < self.text.len() {
            match self.text[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
    }

    fn string(&mut self) -> String {
        let start = self.pos;
        self.string_end();
        let raw = &self.text[start..self.pos.min(self.text.len())];
        serde_json::from_slice(raw).unwrap_or_default()
    }
}

#[derive(Debug)]
enum Frame {
    Map { key: Option<()> },
    Seq { index: usize },
}

fn yaml_walk(text: &str, wanted: &HashSet<Vec<Seg>>) -> HashMap<Vec<Seg>, Location> {
    let mut found = HashMap::new();
    let mut path: Vec<Seg> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut mark = |path: &Vec<Seg>, line: usize, col: usize| {
        if wanted.contains(path) && !found.contains_key(path) {
            found.insert(
                path.clone(),
                Location {
                    line,
                    column: col + 1,
                },
            );
        }
    };
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let (line, col) = (span.start.line(), span.start.col());
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        );
        if is_node {
            match stack.last_mut() {
                Some(Frame::Map { key: key @ None }) => {
                    // A key. Complex (non-scalar) keys are rare; give up on them.
                    let Event::Scalar(ref k, ..) = event else {
                        break;
                    };
                    *key = Some(());
                    path.push(Seg::Key(k.to_string()));
                    mark(&path, line, col);
                    continue;
                }
                Some(Frame::Map { key: Some(()) }) => mark(&path, line, col),
                Some(Frame::Seq { index }) => {
                    path.push(Seg::Index(*index));
                    mark(&path, line, col);
                }
                None => mark(&path, line, col),
            }
            match event {
                Event::SequenceStart(..) => stack.push(Frame::Seq { index: 0 }),
                Event::MappingStart(..) => stack.push(Frame::Map { key: None }),
                _ => leave(&mut stack, &mut path),
            }
        } else if matches!(event, Event::SequenceEnd | Event::MappingEnd) {
            stack.pop();
            leave(&mut stack, &mut path);
        }
    }
    found
}

/// A node finished: step the parent to its next key or index.
fn leave(stack: &mut [Frame], path: &mut Vec<Seg>) {
    match stack.last_mut() {
        Some(Frame::Map { key }) => {
            *key = None;
            path.pop();
        }
        Some(Frame::Seq { index }) => {
            *index += 1;
            path.pop();
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segs: &[Seg]) -> Path {
        Path(segs.to_vec())
    }
    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn json_paths_resolve_to_keys_and_elements() {
        let text = "{\n  \"tasks\": [\n    {\"id\": \"a\"},\n    {\"id\": \"b\", \"depends_on\": [\"x\"]}\n  ]\n}";
        let dep = p(&[k("tasks"), Seg::Index(1), k("depends_on"), Seg::Index(0)]);
        let key = p(&[k("tasks"), Seg::Index(1), k("id")]);
        let missing = p(&[k("tasks"), Seg::Index(0), k("nope")]);
        let locs = json(text, &[&dep, &key, &missing]);
        assert_eq!(
            locs[0],
            Some(Location {
                line: 4,
                column: 32
            })
        );
        assert_eq!(locs[1], Some(Location { line: 4, column: 6 }));
        assert_eq!(locs[2], Some(Location { line: 3, column: 5 }));
    }

    #[test]
    fn yaml_paths_resolve_in_block_and_flow_style() {
        let text = "workflow:\n  tasks:\n    - id: a\n    - { id: b, depends_on: [x, y] }\n";
        let dep = p(&[
            k("workflow"),
            k("tasks"),
            Seg::Index(1),
            k("depends_on"),
            Seg::Index(1),
        ]);
        let id = p(&[k("workflow"), k("tasks"), Seg::Index(0), k("id")]);
        let locs = yaml(text, &[&dep, &id]);
        assert_eq!(
            locs[0],
            Some(Location {
                line: 4,
                column: 32
            })
        );
        assert_eq!(locs[1], Some(Location { line: 3, column: 7 }));
    }
}
