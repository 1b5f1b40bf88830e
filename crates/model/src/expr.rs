//! The condition language: boolean expressions over upstream task results.
//!
//! ```text
//! expr    := or
//! or      := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | compare
//! compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
//! operand := literal | reference | "(" expr ")"
//! reference := TASK "." ("output" ("." KEY | "[" INDEX "]")* | "status")
//! literal := number | "string" | 'string' | true | false | null
//! ```
//!
//! A reference names an upstream task (a direct or transitive dependency) and
//! either its JSON `output` (optionally a path into it) or its final `status`.
//! Validation happens when the workflow is loaded; the engine evaluates.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A JSON literal.
    Literal(Value),
    /// A value taken from an upstream task.
    Ref(Reference),
    /// Logical negation.
    Not(Box<Expr>),
    /// Short-circuit conjunction.
    And(Box<Expr>, Box<Expr>),
    /// Short-circuit disjunction.
    Or(Box<Expr>, Box<Expr>),
    /// A comparison of two operands.
    Compare(Box<Expr>, CompareOp, Box<Expr>),
}

/// A reference to an upstream task's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The upstream task's id.
    pub task: String,
    /// What of that task is read.
    pub field: Field,
    /// Byte offset of the reference in the condition text.
    pub offset: usize,
}

/// The part of a task's result a reference reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The task's final status as a string (`"succeeded"`, `"skipped"`, ...).
    Status,
    /// The task's JSON output, or a path into it.
    Output(Vec<Segment>),
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A syntax error in a condition, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", offset + 1)]
pub struct SyntaxError {
    /// Byte offset into the condition text.
    pub offset: usize,
    /// What was expected.
    pub message: String,
}

/// How deeply conditions may nest; deeper input is rejected instead of
/// exhausting the stack.
const MAX_DEPTH: usize = 64;

impl Expr {
    /// Parses a condition.
    pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let expr = p.or()?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.error("expected `&&`, `||`, a comparison or the end of the condition"));
        }
        Ok(expr)
    }

    /// Every task reference in the expression, in source order.
    pub fn references(&self) -> Vec<&Reference> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Reference>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Ref(r) => out.push(r),
            Expr::Not(e) => e.collect(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(a, _, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }

    /// Evaluates the expression; `resolve` answers a reference (missing
    /// values are `null`).
    pub fn eval(&self, resolve: &dyn Fn(&Reference) -> Option<Value>) -> bool {
        truthy(&self.value(resolve))
    }

    fn value(&self, resolve: &dyn Fn(&Reference) -> Option<Value>) -> Value {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Ref(r) => resolve(r).unwrap_or(Value::Null),
            Expr::Not(e) => Value::Bool(!e.eval(resolve)),
            Expr::And(a, b) => Value::Bool(a.eval(resolve) && b.eval(resolve)),
            Expr::Or(a, b) => Value::Bool(a.eval(resolve) || b.eval(resolve)),
            Expr::Compare(a, op, b) => {
                let (a, b) = (a.value(resolve), b.value(resolve));
                let ord = compare(&a, &b);
                Value::Bool(match op {
                    CompareOp::Eq => a == b || ord == Some(Ordering::Equal),
                    CompareOp::Ne => !(a == b || ord == Some(Ordering::Equal)),
                    CompareOp::Lt => ord == Some(Ordering::Less),
                    CompareOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    CompareOp::Gt => ord == Some(Ordering::Greater),
                    CompareOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                })
            }
        }
    }
}

/// Reads `path` out of a JSON value.
pub fn lookup<'v>(mut value: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    for seg in path {
        value = match seg {
            Segment::Key(k) => value.get(k.as_str())?,
            Segment::Index(i) => value.get(*i)?,
        };
    }
    Some(value)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Orders numbers numerically and strings lexically; other pairs only compare equal.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            message: message.to_string(),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<T, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("condition is nested too deeply"));
        }
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        self.skip_ws();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            return self.nested(|p| Ok(Expr::Not(Box::new(p.unary()?))));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, SyntaxError> {
        let left = self.operand()?;
        self.skip_ws();
        const OPS: [(&str, CompareOp); 6] = [
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<=", CompareOp::Le),
            (">=", CompareOp::Ge),
            ("<", CompareOp::Lt),
            (">", CompareOp::Gt),
        ];
        for (token, op) in OPS {
            if self.eat(token) {
                let right = self.operand()?;
                return Ok(Expr::Compare(Box::new(left), op, Box::new(right)));
            }
        }
        if self.rest().starts_with('=') {
            return Err(self.error("`=` is not an operator; use `==` to compare"));
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Expr, SyntaxError> {
        self.skip_ws();
        let Some(c) = self.rest().chars().next() else {
            return Err(self.error("expected a value, a task reference or `(`"));
        };
        match c {
            '(' => {
                self.pos += 1;
                let inner = self.nested(|p| p.or())?;
                if !self.eat(")") {
                    return Err(self.error("expected `)`"));
                }
                Ok(inner)
            }
            '"' | '\'' => self.string(c).map(|s| Expr::Literal(Value::String(s))),
            '0'..='9' | '-' => self.number(),
            c if is_ident_char(c) => self.reference_or_keyword(),
            _ => Err(self.error("expected a value, a task reference or `(`")),
        }
    }

    fn string(&mut self, quote: char) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('\\' | '"' | '\''))) => out.push(e),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    _ => {
                        self.pos += i;
                        return Err(self.error("unknown escape; use \\\\, \\\", \\', \\n or \\t"));
                    }
                },
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        self.pos = start;
        Err(self.error("unterminated string"))
    }

    fn number(&mut self) -> Result<Expr, SyntaxError> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_digit()
                    || c == '.'
                    || c == 'e'
                    || c == 'E'
                    || (c == '-' && i == 0)
                    || ((c == '+' || c == '-')
                        && i > 0
                        && matches!(rest.as_bytes()[i - 1], b'e' | b'E')))
            })
            .map_or(rest.len(), |(i, _)| i);
        let text = &rest[..len];
        let value: Value = serde_json::from_str(text)
            .map_err(|_| self.error(&format!("`{text}` is not a number")))?;
        self.pos += len;
        Ok(Expr::Literal(value))
    }

    fn ident(&mut self) -> &'a str {
        let rest = &self.text[self.pos..];
        let len = rest
            .char_indices()
            .find(|&(_, c)| !is_ident_char(c))
            .map_or(rest.len(), |(i, _)| i);
        self.pos += len;
        &rest[..len]
    }

    fn reference_or_keyword(&mut self) -> Result<Expr, SyntaxError> {
        let offset = self.pos;
        let task = self.ident().to_string();
        match task.as_str() {
            "true" => return Ok(Expr::Literal(Value::Bool(true))),
            "false" => return Ok(Expr::Literal(Value::Bool(false))),
            "null" => return Ok(Expr::Literal(Value::Null)),
            _ => {}
        }
        if !self.rest().starts_with('.') {
            return Err(SyntaxError {
                offset,
                message: format!(
                    "`{task}` alone is not a value; write `{task}.output`, `{task}.output.FIELD` or `{task}.status`"
                ),
            });
        }
        self.pos += 1;
        let field_at = self.pos;
        let field = match self.ident() {
            "status" => Field::Status,
            "output" => {
                let mut path = Vec::new();
                loop {
                    if self.rest().starts_with('.') {
                        self.pos += 1;
                        let key = self.ident();
                        if key.is_empty() {
                            return Err(self.error("expected a field name after `.`"));
                        }
                        path.push(Segment::Key(key.to_string()));
                    } else if self.rest().starts_with('[') {
                        self.pos += 1;
                        let digits = self.ident();
                        let index = digits
                            .parse()
                            .map_err(|_| self.error("expected an array index like `[0]`"))?;
                        if !self.rest().starts_with(']') {
                            return Err(self.error("expected `]`"));
                        }
                        self.pos += 1;
                        path.push(Segment::Index(index));
                    } else {
                        break;
                    }
                }
                Field::Output(path)
            }
            other => {
                return Err(SyntaxError {
                    offset: field_at,
                    message: format!("unknown task field `{other}`; expected `output` or `status`"),
                });
            }
        };
        Ok(Expr::Ref(Reference {
            task,
            field,
            offset,
        }))
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eval(text: &str, outputs: &Value) -> bool {
        let expr = Expr::parse(text).unwrap();
        expr.eval(&|r: &Reference| match &r.field {
            Field::Status => Some(json!("succeeded")),
            Field::Output(path) => lookup(outputs.get(&r.task)?, path).cloned(),
        })
    }

    #[test]
    fn evaluates_comparisons_and_logic() {
        let out = json!({"research": {"count": 3, "tags": ["a", "b"], "ok": true}});
        assert!(eval("research.output.count > 2", &out));
        assert!(!eval("research.output.count >= 4", &out));
        assert!(eval("research.output.tags[1] == 'b'", &out));
        assert!(eval("research.output.ok && !research.output.missing", &out));
        assert!(eval("research.status == \"succeeded\" || false", &out));
        assert!(eval("(research.output.count == 3.0)", &out));
        assert!(!eval("research.output.missing > 1", &out));
    }

    #[test]
    fn collects_references_in_order() {
        let e = Expr::parse("a.output.x > 1 && (b.status == 'failed' || c.output)").unwrap();
        let tasks: Vec<_> = e.references().iter().map(|r| r.task.as_str()).collect();
        assert_eq!(tasks, ["a", "b", "c"]);
    }

    #[test]
    fn syntax_errors_say_what_was_expected_and_where() {
        let e = Expr::parse("a.output.x = 1").unwrap_err();
        assert!(e.message.contains("use `==`"), "{e}");
        assert_eq!(e.offset, 11);
        let e = Expr::parse("a.result > 1").unwrap_err();
        assert!(e.message.contains("expected `output` or `status`"), "{e}");
        assert!(
            Expr::parse("a.output > 'x")
                .unwrap_err()
                .message
                .contains("unterminated")
        );
        assert!(
            Expr::parse("a")
                .unwrap_err()
                .message
                .contains("alone is not a value")
        );
        assert!(
            Expr::parse("(a.output")
                .unwrap_err()
                .message
                .contains("expected `)`")
        );
        assert!(Expr::parse("").is_err());
        assert!(Expr::parse("a.output > 1 junk").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = "(".repeat(10_000) + "true" + &")".repeat(10_000);
        assert!(
            Expr::parse(&text)
                .unwrap_err()
                .message
                .contains("too deeply")
        );
        let text = "!".repeat(10_000) + "true";
        assert!(Expr::parse(&text).is_err());
    }
}
