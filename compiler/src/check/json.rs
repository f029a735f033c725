//! JSON text → values that remember where they came from, so a tracking plan's problems can be
//! reported at their line and column. (serde_json's values carry no positions.)

use crate::source::Span;

/// Arrays and objects may nest at most this deep.
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    /// Members in document order.
    Object(Vec<(String, Span, Json)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Json {
    pub value: Value,
    pub span: Span,
}

impl Json {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A syntax error: what and where (a byte offset).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
}

pub fn parse(text: &str) -> Result<Json, SyntaxError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    parser.whitespace();
    let value = parser.value(0)?;
    parser.whitespace();
    if parser.at < parser.bytes.len() {
        return Err(parser.error("expected the end of the document"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> SyntaxError {
        let found = match self.text[self.at..].chars().next() {
            Some(c) => format!(", found `{c}`"),
            None => ", found the end of the file".into(),
        };
        SyntaxError {
            message: format!("{message}{found}"),
            offset: self.at,
        }
    }

    fn whitespace(&mut self) {
        while self.at < self.bytes.len()
            && matches!(self.bytes[self.at], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("the document nests too deeply"));
        }
        let start = self.at;
        let value = match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.whitespace();
                if !self.eat(b'}') {
                    loop {
                        self.whitespace();
                        let key_start = self.at;
                        if self.bytes.get(self.at) != Some(&b'"') {
                            return Err(self.error("expected a member name in double quotes"));
                        }
                        let key = self.string()?;
                        let key_span = Span::new(key_start, self.at);
                        self.whitespace();
                        if !self.eat(b':') {
                            return Err(self.error("expected `:`"));
                        }
                        self.whitespace();
                        let value = self.value(depth + 1)?;
                        members.push((key, key_span, value));
                        self.whitespace();
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected `,` or `}`"));
                        }
                    }
                }
                Value::Object(members)
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.whitespace();
                if !self.eat(b']') {
                    loop {
                        self.whitespace();
                        items.push(self.value(depth + 1)?);
                        self.whitespace();
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected `,` or `]`"));
                        }
                    }
                }
                Value::Array(items)
            }
            Some(b'"') => Value::String(self.string()?),
            Some(b't') if self.text[self.at..].starts_with("true") => {
                self.at += 4;
                Value::Bool(true)
            }
            Some(b'f') if self.text[self.at..].starts_with("false") => {
                self.at += 5;
                Value::Bool(false)
            }
            Some(b'n') if self.text[self.at..].starts_with("null") => {
                self.at += 4;
                Value::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                let length = self.text[self.at..]
                    .find(|c: char| {
                        !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                    })
                    .unwrap_or(self.text.len() - self.at);
                let number = self.text[self.at..self.at + length]
                    .parse::<f64>()
                    .map_err(|_| self.error("invalid number"))?;
                self.at += length;
                Value::Number(number)
            }
            _ => return Err(self.error("expected a JSON value")),
        };
        Ok(Json {
            value,
            span: Span::new(start, self.at),
        })
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.text[self.at..].chars().next() else {
                return Err(self.error("unterminated string"));
            };
            match c {
                '"' => {
                    self.at += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.at += 1;
                    let escaped = self.bytes.get(self.at).copied();
                    self.at += 1;
                    match escaped {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hex = self
                                .text
                                .get(self.at..self.at + 4)
                                .ok_or_else(|| self.error("invalid \\u escape"))?;
                            let unit = u32::from_str_radix(hex, 16)
                                .map_err(|_| self.error("invalid \\u escape"))?;
                            self.at += 4;
                            // Surrogate pairs decode to one character; a lone surrogate is replaced.
                            let decoded = if (0xD800..0xDC00).contains(&unit)
                                && self.text[self.at..].starts_with("\\u")
                            {
                                let low = self
                                    .text
                                    .get(self.at + 2..self.at + 6)
                                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                                match low {
                                    Some(low @ 0xDC00..=0xDFFF) => {
                                        self.at += 6;
                                        char::from_u32(
                                            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
                                        )
                                    }
                                    _ => None,
                                }
                            } else {
                                char::from_u32(unit)
                            };
                            out.push(decoded.unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.error("invalid escape"));
                        }
                    }
                }
                c if (c as u32) < 0x20 => return Err(self.error("control character in a string")),
                c => {
                    out.push(c);
                    self.at += c.len_utf8();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_spans_and_reports_offsets() {
        let json = parse(r#"{"a": [1, -2.5e1, "x\u00e9"], "b": null}"#).expect("valid");
        let a = json.get("a").expect("a");
        assert_eq!(a.span, Span::new(6, 28));
        assert!(matches!(&a.value, Value::Array(items) if items.len() == 3));
        let error = parse("{\"a\": tru}").expect_err("invalid");
        assert_eq!(error.offset, 6);
        assert!(parse(&"[".repeat(1000)).is_err());
    }
}
