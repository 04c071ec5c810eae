//! The filter parser: text to [`Filter`], bounded in depth and size.

use super::*;

/// A syntax error: what was expected and where (1-based character position).
#[derive(Debug)]
pub(crate) struct SyntaxError {
    message: String,
    position: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

/// A recursive-descent parser over filter and PATCH path text.
pub(crate) struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    expressions: usize,
}

pub(super) type Parsed<T> = Result<T, SyntaxError>;

/// Characters of an attribute path token: RFC 7643 §2.1 name characters,
/// `$` (`$ref`), and the `:` and `.` of schema URNs and sub-attributes.
pub(super) fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            depth: 0,
            expressions: 0,
        }
    }

    /// A whole filter.
    pub(crate) fn filter(mut self) -> Parsed<Filter> {
        let filter = self.or_expression(false)?;
        self.skip_whitespace();
        if self.pos < self.text.len() {
            let found = self.describe(self.pos);
            return Err(self.error_at(
                self.pos,
                format!("unexpected {found} after a complete expression (join expressions with `and` or `or`)"),
            ));
        }
        Ok(filter)
    }

    /// A whole PATCH path: `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
    pub(crate) fn patch_path(mut self) -> Parsed<(AttrPath, Option<Filter>)> {
        self.skip_whitespace();
        let mut attribute = self.attr_path()?;
        let mut filter = None;
        if self.peek() == Some('[') {
            filter = Some(self.value_filter(&attribute)?);
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    let start = self.pos;
                    let token = self.take_while(is_path_char);
                    if token.is_empty() {
                        let found = self.describe(start);
                        return Err(self.error_at(
                            start,
                            format!("expected an attribute name after `].`, found {found}"),
                        ));
                    }
                    let sub = AttrPath::parse(token).map_err(|why| self.error_at(start, why))?;
                    if sub.urn.is_some() || sub.sub_attribute.is_some() {
                        return Err(
                            self.error_at(start, format!("`{token}` is not a sub-attribute name"))
                        );
                    }
                    attribute.sub_attribute = Some(sub.name);
                }
                None => {}
                Some(_) => {
                    let found = self.describe(self.pos);
                    return Err(self.error_at(
                        self.pos,
                        format!(
                            "expected `.` and a sub-attribute or the end after `]`, found {found}"
                        ),
                    ));
                }
            }
        }
        self.skip_whitespace();
        if self.pos < self.text.len() {
            let found = self.describe(self.pos);
            return Err(self.error_at(self.pos, format!("unexpected {found} after the path")));
        }
        Ok((attribute, filter))
    }

    pub(super) fn or_expression(&mut self, in_brackets: bool) -> Parsed<Filter> {
        let mut left = self.and_expression(in_brackets)?;
        while self.keyword("or") {
            let right = self.and_expression(in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    pub(super) fn and_expression(&mut self, in_brackets: bool) -> Parsed<Filter> {
        let mut left = self.unary(in_brackets)?;
        while self.keyword("and") {
            let right = self.unary(in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// A parenthesised group, `not (...)`, or an attribute expression.
    pub(super) fn unary(&mut self, in_brackets: bool) -> Parsed<Filter> {
        self.skip_whitespace();
        let start = self.pos;
        if self.peek() == Some('(') {
            return self.group(in_brackets);
        }
        let word = self.take_while(is_path_char);
        if word.eq_ignore_ascii_case("not") {
            self.skip_whitespace();
            if self.peek() == Some('(') {
                return Ok(Filter::Not(Box::new(self.group(in_brackets)?)));
            }
        }
        // Not a `not (`: the word is an attribute path.
        self.pos = start;
        self.attribute_expression(in_brackets)
    }

    pub(super) fn group(&mut self, in_brackets: bool) -> Parsed<Filter> {
        let open = self.pos;
        self.pos += 1;
        self.enter(open)?;
        let inner = self.or_expression(in_brackets)?;
        self.skip_whitespace();
        if self.peek() != Some(')') {
            let found = self.describe(self.pos);
            return Err(self.error_at(
                self.pos,
                format!(
                    "expected `)` to close the `(` at position {}, found {found}",
                    self.position(open)
                ),
            ));
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(inner)
    }

    pub(super) fn attribute_expression(&mut self, in_brackets: bool) -> Parsed<Filter> {
        self.expressions += 1;
        if self.expressions > MAX_EXPRESSIONS {
            return Err(self.error_at(
                self.pos,
                format!("too many expressions (at most {MAX_EXPRESSIONS})"),
            ));
        }
        let path = self.attr_path()?;
        self.skip_whitespace();
        if self.peek() == Some('[') {
            if in_brackets {
                return Err(self.error_at(self.pos, "value filters cannot be nested"));
            }
            let filter = self.value_filter(&path)?;
            if self.peek() == Some('.') {
                // `emails[type eq "work"].value eq "x"`: not RFC 7644's
                // filter grammar, but what Entra ID sends when users are
                // matched on a multi-valued sub-attribute. It means: some
                // element matching the bracket has the sub-attribute
                // satisfying the comparison.
                self.pos += 1;
                let sub_start = self.pos;
                let sub = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if sub.is_empty() || !sub.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    let found = self.describe(sub_start);
                    return Err(self.error_at(
                        sub_start,
                        format!(
                            "expected a sub-attribute name after `{path}[...].`, found {found}"
                        ),
                    ));
                }
                let sub = AttrPath::new(sub);
                self.skip_whitespace();
                let comparison = self.comparison(sub)?;
                return Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(Filter::And(Box::new(filter), Box::new(comparison))),
                });
            }
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(filter),
            });
        }
        self.comparison(path)
    }

    /// `pr`, or an operator and a value, after `path`.
    fn comparison(&mut self, path: AttrPath) -> Parsed<Filter> {
        let op_start = self.pos;
        let word = self.take_while(|c| c.is_ascii_alphabetic());
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present { path });
        }
        let Some(op) = CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
        else {
            let found = self.describe(op_start);
            return Err(self.error_at(
                op_start,
                format!(
                    "expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le or pr) after `{path}`, found {found}"
                ),
            ));
        };
        self.skip_whitespace();
        let value = self.comp_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// `[valFilter]` after `path`; leaves the position after the `]`.
    pub(super) fn value_filter(&mut self, path: &AttrPath) -> Parsed<Filter> {
        let open = self.pos;
        if path.sub_attribute.is_some() {
            return Err(self.error_at(
                open,
                format!("`{path}` has a sub-attribute before a value filter; write `attribute[filter].sub`"),
            ));
        }
        self.pos += 1;
        self.enter(open)?;
        let filter = self.or_expression(true)?;
        self.skip_whitespace();
        if self.peek() != Some(']') {
            let found = self.describe(self.pos);
            return Err(self.error_at(
                self.pos,
                format!(
                    "expected `]` to close the `[` at position {}, found {found}",
                    self.position(open)
                ),
            ));
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(filter)
    }

    pub(super) fn attr_path(&mut self) -> Parsed<AttrPath> {
        let start = self.pos;
        let token = self.take_while(is_path_char);
        if token.is_empty() {
            let found = self.describe(start);
            return Err(self.error_at(start, format!("expected an attribute name, found {found}")));
        }
        AttrPath::parse(token).map_err(|why| self.error_at(start, why))
    }

    pub(super) fn comp_value(&mut self) -> Parsed<CompValue> {
        let start = self.pos;
        match self.peek() {
            Some('"') => self.string(),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let token = self
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'));
                let invalid = || self.error_at(start, format!("`{token}` is not a valid number"));
                // serde_json checks the JSON number grammar; the standard
                // library rounds fractions exactly, so printing a parsed
                // number and parsing it again gives the same number.
                let number = serde_json::from_str::<Number>(token).map_err(|_| invalid())?;
                let number = if number.is_f64() {
                    token
                        .parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .ok_or_else(invalid)?
                } else {
                    number
                };
                Ok(CompValue::Number(number))
            }
            _ => {
                let word = self.take_while(is_path_char);
                // RFC 7644 §3.4.2.2 spells these in lower case; accept any.
                for (literal, value) in [
                    ("true", CompValue::Bool(true)),
                    ("false", CompValue::Bool(false)),
                    ("null", CompValue::Null),
                ] {
                    if word.eq_ignore_ascii_case(literal) {
                        return Ok(value);
                    }
                }
                let found = self.describe(start);
                let hint = if word.is_empty() {
                    ""
                } else {
                    "; strings must be in double quotes"
                };
                Err(self.error_at(
                    start,
                    format!("expected a value (a string in double quotes, a number, true, false or null), found {found}{hint}"),
                ))
            }
        }
    }

    /// A JSON string literal, escapes and all (RFC 7644 §3.4.2.2 compValue
    /// strings are JSON strings, RFC 7159).
    pub(super) fn string(&mut self) -> Parsed<CompValue> {
        let start = self.pos;
        let mut escaped = false;
        let mut end = None;
        for (offset, c) in self.text[start + 1..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(start + 1 + offset);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Err(self.error_at(start, "unterminated string"));
        };
        let literal = &self.text[start..=end];
        let value = serde_json::from_str::<String>(literal)
            .map_err(|error| self.error_at(start, format!("invalid string {literal}: {error}")))?;
        self.pos = end + 1;
        Ok(CompValue::String(value))
    }

    /// Consumes `word` (ignoring case) if it comes next as a whole word.
    pub(super) fn keyword(&mut self, word: &str) -> bool {
        let before = self.pos;
        self.skip_whitespace();
        let found = self.take_while(is_path_char);
        if found.eq_ignore_ascii_case(word) {
            true
        } else {
            self.pos = before;
            false
        }
    }

    pub(super) fn enter(&mut self, at: usize) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                at,
                format!("nested too deeply (at most {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    pub(super) fn take_while(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let rest = &self.text[self.pos..];
        let length = rest.find(|c| !accept(c)).unwrap_or(rest.len());
        self.pos += length;
        &rest[..length]
    }

    pub(super) fn skip_whitespace(&mut self) {
        self.take_while(char::is_whitespace);
    }

    /// 1-based character position of a byte offset.
    pub(super) fn position(&self, at: usize) -> usize {
        self.text[..at].chars().count() + 1
    }

    pub(super) fn describe(&self, at: usize) -> String {
        let rest = &self.text[at..];
        if rest.is_empty() {
            return "the end".to_owned();
        }
        let token: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(24)
            .collect();
        format!("`{token}`")
    }

    pub(super) fn error_at(&self, at: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            position: self.position(at),
        }
    }
}
