//! Terms written in Erlang syntax, as an operator types them: `{ping, 1}`,
//! `[1, 2 | T]`-style lists, `#{k => v}`, `<<"bin">>`, `'quoted atoms'`,
//! `"strings"` (lists of character codes, as in Erlang), `$a`, `16#ff`,
//! `-1.5e3`, with an optional closing `.`.
//!
//! What it owns: turning text into a [`Term`] (a term typed on the command
//! line, or a configuration file written for the BEAM such as OTP's
//! `ssl_dist_optfile`, `%` comments included) and, when the text is not a
//! term, saying where (line, and a 1-based column counted in characters)
//! and what was expected there.
//!
//! What it must never do: evaluate anything. Variables, function calls,
//! operators and funs are refused with a column; so are pids, ports and
//! references, which only mean something on one node (the command line
//! takes a process as a separate argument instead).

use num_bigint::BigInt;

use super::{Term, Tuple};

/// Why text is not a term: where (1-based line, and column in characters
/// within that line) and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", where_(*line, *column))]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// `column C: ` for one-line text (a command line), `line L, column C: `
/// past the first line (a configuration file).
fn where_(line: usize, column: usize) -> String {
    if line == 1 {
        format!("column {column}: ")
    } else {
        format!("line {line}, column {column}: ")
    }
}

/// The text of a string term (a list of code points, or a byte list), or of
/// a binary holding UTF-8.
pub fn as_string(term: &Term) -> Option<String> {
    match term {
        Term::ByteList(b) => Some(b.bytes.iter().map(|&c| c as char).collect()),
        Term::List(l) => l
            .elements
            .iter()
            .map(|e| match e {
                Term::FixInteger(i) => u32::try_from(i.value).ok().and_then(char::from_u32),
                _ => None,
            })
            .collect(),
        Term::Binary(b) => std::str::from_utf8(&b.bytes).ok().map(str::to_owned),
        _ => None,
    }
}

/// The deepest nesting accepted, as the decoder limits it.
const MAX_DEPTH: usize = 256;

/// Parses one term; the whole text must be that term (and an optional `.`).
pub fn parse(text: &str) -> Result<Term, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let t = p.term()?;
    p.skip_ws();
    if p.peek() == Some('.') {
        p.pos += 1;
        p.skip_ws();
    }
    match p.peek() {
        None => Ok(t),
        Some(c) => Err(p.err(format!("unexpected {c:?} after the term"))),
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        self.err_at(self.pos, message)
    }

    fn err_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        let before = &self.chars[..pos.min(self.chars.len())];
        let line = 1 + before.iter().filter(|&&c| c == '\n').count();
        let line_start = before.iter().rposition(|&c| c == '\n').map_or(0, |i| i + 1);
        ParseError {
            line,
            column: pos - line_start + 1,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.pos += 1,
                // A comment runs to the end of the line.
                Some('%') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        self.skip_ws();
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(self.err(format!("expected {what}, found {x:?}"))),
            None => Err(self.err(format!("expected {what}, found the end of the text"))),
        }
    }

    fn term(&mut self) -> Result<Term, ParseError> {
        self.skip_ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH}")));
        }
        let t = self.term_inner();
        self.depth -= 1;
        t
    }

    fn term_inner(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.err("expected a term, found the end of the text"));
        };
        match c {
            '{' => {
                self.pos += 1;
                let items = self.sequence('}', "'}'")?;
                Ok(Term::Tuple(Tuple::from(items)))
            }
            '[' => self.list(),
            '#' => self.map(),
            '<' if self.peek_at(1) == Some('<') => self.binary(),
            '<' => Err(self.err(
                "pids, ports and references cannot be written in a term here \
                 (name the process as its own argument)",
            )),
            '"' => {
                let s = self.string('"')?;
                Ok(super::elixir::charlist(&s))
            }
            '\'' => {
                let s = self.string('\'')?;
                Ok(super::atom(&s))
            }
            '$' => {
                self.pos += 1;
                let ch = self.char_in_literal()?;
                Ok(super::int(i64::from(u32::from(ch))))
            }
            '-' | '+' | '0'..='9' => self.number(),
            c if c.is_lowercase() => {
                let word = self.word();
                self.skip_ws();
                if self.peek() == Some('(') || self.peek() == Some(':') {
                    return Err(self.err_at(
                        start,
                        format!("{word}: function calls are not terms; write the value itself"),
                    ));
                }
                Ok(super::atom(&word))
            }
            c if c.is_uppercase() || c == '_' => {
                let word = self.word();
                Err(self.err_at(
                    start,
                    format!("{word} is a variable; a term here must be written out in full"),
                ))
            }
            other => Err(self.err(format!("expected a term, found {other:?}"))),
        }
    }

    fn word(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '@' {
                s.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        s
    }

    /// Terms separated by commas up to `close` (which may come at once).
    fn sequence(&mut self, close: char, what: &str) -> Result<Vec<Term>, ParseError> {
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.term()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(c) => return Err(self.err(format!("expected ',' or {what}, found {c:?}"))),
                None => {
                    return Err(
                        self.err(format!("expected ',' or {what}, found the end of the text"))
                    )
                }
            }
        }
    }

    fn list(&mut self) -> Result<Term, ParseError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            return Ok(super::nil());
        }
        loop {
            items.push(self.term()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(super::list(items));
                }
                Some('|') => {
                    self.pos += 1;
                    let tail = self.term()?;
                    self.expect(']', "']' after the list's tail")?;
                    return Ok(match tail {
                        // [a | [b]] is the proper list [a, b].
                        Term::List(l) => {
                            items.extend(l.elements);
                            super::list(items)
                        }
                        Term::ByteList(b) => {
                            items.extend(b.bytes.iter().map(|&x| super::int(i64::from(x))));
                            super::list(items)
                        }
                        Term::ImproperList(l) => {
                            items.extend(l.elements);
                            Term::ImproperList(super::ImproperList::from((items, *l.last)))
                        }
                        other => Term::ImproperList(super::ImproperList::from((items, other))),
                    });
                }
                Some(c) => return Err(self.err(format!("expected ',', '|' or ']', found {c:?}"))),
                None => return Err(self.err("expected ',', '|' or ']', found the end of the text")),
            }
        }
    }

    fn map(&mut self) -> Result<Term, ParseError> {
        self.pos += 1;
        self.expect('{', "'{' after '#'")?;
        let mut map = super::Map::with_capacity(0);
        self.skip_ws();
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(Term::Map(map));
        }
        loop {
            let k = self.term()?;
            self.skip_ws();
            if !(self.peek() == Some('=') && self.peek_at(1) == Some('>')) {
                return Err(self.err("expected '=>' after the map key"));
            }
            self.pos += 2;
            let v = self.term()?;
            map.map.insert(k, v);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {
                    self.pos += 1;
                    return Ok(Term::Map(map));
                }
                Some(c) => return Err(self.err(format!("expected ',' or '}}', found {c:?}"))),
                None => return Err(self.err("expected ',' or '}', found the end of the text")),
            }
        }
    }

    /// `<<>>`, `<<"text">>`, `<<1, 2, 3>>` and mixes of the two.
    fn binary(&mut self) -> Result<Term, ParseError> {
        self.pos += 2;
        let mut bytes = Vec::new();
        self.skip_ws();
        if self.peek() == Some('>') && self.peek_at(1) == Some('>') {
            self.pos += 2;
            return Ok(super::binary(bytes));
        }
        loop {
            self.skip_ws();
            let at = self.pos;
            match self.peek() {
                Some('"') => {
                    let s = self.string('"')?;
                    for ch in s.chars() {
                        let b = u8::try_from(u32::from(ch)).map_err(|_| {
                            self.err_at(
                                at,
                                format!("{ch:?} is not a byte; write <<\"...\"/utf8>> as bytes"),
                            )
                        })?;
                        bytes.push(b);
                    }
                }
                _ => {
                    let t = self.term()?;
                    match super::as_i64(&t) {
                        Some(v) if (0..=255).contains(&v) => bytes.push(v as u8),
                        _ => {
                            return Err(self.err_at(
                                at,
                                "a binary holds strings and integers 0..255 (segments with sizes or types are not supported)",
                            ))
                        }
                    }
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('>') if self.peek_at(1) == Some('>') => {
                    self.pos += 2;
                    return Ok(super::binary(bytes));
                }
                Some(c) => return Err(self.err(format!("expected ',' or '>>', found {c:?}"))),
                None => return Err(self.err("expected ',' or '>>', found the end of the text")),
            }
        }
    }

    /// A quoted string or atom, with Erlang's escapes.
    fn string(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err_at(start, format!("this {quote} is never closed"))),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some(_) => s.push(self.char_in_literal()?),
            }
        }
    }

    /// One character of a literal, an escape sequence read as its character.
    fn char_in_literal(&mut self) -> Result<char, ParseError> {
        let at = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.err("expected a character, found the end of the text"));
        };
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let Some(e) = self.peek() else {
            return Err(self.err("expected an escape after '\\'"));
        };
        self.pos += 1;
        Ok(match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            's' => ' ',
            'e' => '\x1b',
            'b' => '\x08',
            'd' => '\x7f',
            'f' => '\x0c',
            'v' => '\x0b',
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                char::from_u32(v).ok_or_else(|| self.err_at(at, "not a character"))?
            }
            'x' => {
                let mut hex = String::new();
                if self.peek() == Some('{') {
                    self.pos += 1;
                    while let Some(d) = self.peek().filter(|d| d.is_ascii_hexdigit()) {
                        hex.push(d);
                        self.pos += 1;
                    }
                    self.expect('}', "'}' closing \\x{...}")?;
                } else {
                    for _ in 0..2 {
                        if let Some(d) = self.peek().filter(|d| d.is_ascii_hexdigit()) {
                            hex.push(d);
                            self.pos += 1;
                        }
                    }
                }
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| self.err_at(at, "\\x needs hex digits naming a character"))?
            }
            other => other,
        })
    }

    fn number(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => {
                self.pos += 1;
                true
            }
            Some('+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        self.skip_ws();
        let digits_at = self.pos;
        let digits = self.digits(10);
        if digits.is_empty() {
            return Err(self.err("expected a number after the sign"));
        }
        // Base#Digits, e.g. 16#ff.
        if self.peek() == Some('#') {
            let base: u32 = digits
                .replace('_', "")
                .parse()
                .ok()
                .filter(|b| (2..=36).contains(b))
                .ok_or_else(|| self.err_at(digits_at, "a base is 2 to 36"))?;
            self.pos += 1;
            let ds = self.digits(base);
            if ds.is_empty() {
                return Err(self.err(format!("expected digits in base {base}")));
            }
            return self.integer(&ds, base, negative, start);
        }
        let is_float =
            self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit());
        if !is_float {
            return self.integer(&digits, 10, negative, start);
        }
        self.pos += 1;
        let frac = self.digits(10);
        let mut text = format!("{}.{}", digits.replace('_', ""), frac.replace('_', ""));
        if matches!(self.peek(), Some('e' | 'E')) {
            let mark = self.pos;
            self.pos += 1;
            let mut exp = String::new();
            if let Some(s @ ('-' | '+')) = self.peek() {
                exp.push(s);
                self.pos += 1;
            }
            let ed = self.digits(10);
            if ed.is_empty() {
                return Err(self.err_at(mark, "expected the exponent's digits"));
            }
            exp.push_str(&ed);
            text = format!("{text}e{exp}");
        }
        let v: f64 = text
            .parse()
            .map_err(|_| self.err_at(start, "not a float"))?;
        if !v.is_finite() {
            return Err(self.err_at(start, "the float is out of range"));
        }
        Ok(Term::Float(super::Float {
            value: if negative { -v } else { v },
        }))
    }

    fn digits(&mut self, base: u32) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_digit(base) || (c == '_' && !s.is_empty()) {
                s.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        s
    }

    fn integer(
        &self,
        digits: &str,
        base: u32,
        negative: bool,
        start: usize,
    ) -> Result<Term, ParseError> {
        let clean = digits.replace('_', "");
        let v = BigInt::parse_bytes(clean.as_bytes(), base)
            .ok_or_else(|| self.err_at(start, "not an integer"))?;
        let v = if negative { -v } else { v };
        Ok(match i64::try_from(&v) {
            Ok(small) => super::int(small),
            Err(_) => Term::BigInteger(super::BigInteger { value: v }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{self, atom, int};

    #[test]
    fn the_forms_an_operator_types() {
        assert_eq!(parse("ok").unwrap(), atom("ok"));
        assert_eq!(parse(" 'Hello world' . ").unwrap(), atom("Hello world"));
        assert_eq!(parse("node@host").unwrap(), atom("node@host"));
        assert_eq!(parse("-42").unwrap(), int(-42));
        assert_eq!(parse("16#ff").unwrap(), int(255));
        assert_eq!(parse("1_000").unwrap(), int(1000));
        assert_eq!(parse("$a").unwrap(), int(97));
        assert_eq!(parse("$\\n").unwrap(), int(10));
        assert_eq!(
            parse("-1.5e3").unwrap(),
            Term::Float(term::Float { value: -1500.0 })
        );
        assert_eq!(
            parse("{ping, [1, 2], <<\"hi\", 0>>}").unwrap(),
            crate::tup![
                atom("ping"),
                term::list(vec![int(1), int(2)]),
                term::binary(b"hi\0".to_vec())
            ]
        );
        assert_eq!(parse("\"ab\"").unwrap(), term::elixir::charlist("ab"));
        assert_eq!(parse("[]").unwrap(), term::nil());
        assert_eq!(parse("{}").unwrap(), term::tuple(vec![]));
        assert_eq!(parse("<<>>").unwrap(), term::binary(Vec::new()));
        assert_eq!(
            parse("[a | b]").unwrap(),
            Term::ImproperList(term::ImproperList::from((vec![atom("a")], atom("b"))))
        );
        assert_eq!(
            parse("[a | [b]]").unwrap(),
            term::list(vec![atom("a"), atom("b")])
        );
        let m = parse("#{k => 1, \"s\" => [x]}").unwrap();
        let Term::Map(m) = m else { panic!() };
        assert_eq!(m.map.get(&atom("k")), Some(&int(1)));
        assert_eq!(
            parse("123456789012345678901234567890").unwrap().to_string(),
            "123456789012345678901234567890"
        );
        assert_eq!(parse("'it\\'s' % a comment").unwrap(), atom("it's"));
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = |s: &str| parse(s).unwrap_err();
        assert_eq!(e("{a, b").column, 6);
        assert!(e("{a, b").message.contains("'}'"), "{}", e("{a, b"));
        assert_eq!(e("{a,, b}").column, 4);
        assert_eq!(e("{a, X}").column, 5);
        assert!(e("{a, X}").message.contains("variable"));
        assert_eq!(e("foo(1)").column, 1);
        assert!(e("foo(1)").message.contains("function calls"));
        assert_eq!(e("[1, 2 3]").column, 7);
        assert_eq!(e("'open").column, 1);
        assert!(e("'open").message.contains("never closed"));
        assert_eq!(e("<0.1.2>").column, 1);
        assert!(e("<0.1.2>").message.contains("pids"));
        assert_eq!(e("<<256>>").column, 3);
        assert_eq!(e("#{a 1}").column, 5);
        assert_eq!(e("ok ok").column, 4);
        assert_eq!(e("").column, 1);
        assert_eq!(e("1.5e").column, 4);
        let deep = "[".repeat(300);
        assert!(e(&deep).message.contains("nested deeper"));
        assert_eq!(
            e("{a, b").to_string(),
            "column 6: expected ',' or '}', found the end of the text"
        );
    }

    #[test]
    fn what_it_prints_it_reads_back() {
        for text in [
            "{ok,[1,2,3],<<\"abc\">>,'Quoted atom',-7,2.5}",
            "#{a => {b,[]}}",
        ] {
            let t = parse(text).unwrap();
            assert_eq!(parse(&t.to_string()).unwrap(), t, "{text}");
        }
    }
}
/// The configuration files `dist::tls` reads (these came with it).
#[cfg(test)]
mod config_tests {
    use super::*;
    use crate::term::{atom, int, list, tuple};

    /// A string as `parse` reads it (a byte list when every code fits).
    fn s(text: &str) -> Term {
        parse(&format!("{text:?}")).unwrap()
    }

    #[test]
    fn an_ssl_dist_optfile() {
        let text = r#"
            % what the OTP guide shows
            [{server, [{certfile, "/etc/ssl/node.pem"},
                       {keyfile, "/etc/ssl/node.key"},
                       {secure_renegotiate, true},
                       {verify, verify_peer}, {fail_if_no_peer_cert, true}]},
             {client, [{cacertfile, "ca.pem"}, {versions, ['tlsv1.2', 'tlsv1.3']}]}].
        "#;
        let t = parse(text).unwrap();
        let want = list(vec![
            tuple(vec![
                atom("server"),
                list(vec![
                    tuple(vec![atom("certfile"), s("/etc/ssl/node.pem")]),
                    tuple(vec![atom("keyfile"), s("/etc/ssl/node.key")]),
                    tuple(vec![atom("secure_renegotiate"), atom("true")]),
                    tuple(vec![atom("verify"), atom("verify_peer")]),
                    tuple(vec![atom("fail_if_no_peer_cert"), atom("true")]),
                ]),
            ]),
            tuple(vec![
                atom("client"),
                list(vec![
                    tuple(vec![atom("cacertfile"), s("ca.pem")]),
                    tuple(vec![
                        atom("versions"),
                        list(vec![atom("tlsv1.2"), atom("tlsv1.3")]),
                    ]),
                ]),
            ]),
        ]);
        assert_eq!(t, want);
    }

    #[test]
    fn numbers_strings_binaries_maps() {
        assert_eq!(parse("16#ff.").unwrap(), int(255));
        assert_eq!(parse("-12").unwrap(), int(-12));
        assert_eq!(parse("$a").unwrap(), int(97));
        assert_eq!(parse("1_000").unwrap(), int(1000));
        assert_eq!(
            parse("2.5e1").unwrap(),
            Term::Float(crate::term::Float { value: 25.0 })
        );
        assert_eq!(
            as_string(&parse(r#""a\nb""#).unwrap()).as_deref(),
            Some("a\nb")
        );
        assert_eq!(parse("'hello world'").unwrap(), atom("hello world"));
        assert_eq!(
            parse(r#"<<"ab", 1>>"#).unwrap(),
            crate::term::binary(vec![97, 98, 1])
        );
        assert_eq!(parse("[1|[2]]").unwrap(), list(vec![int(1), int(2)]));
        assert!(matches!(
            parse("#{a => 1}").unwrap(),
            Term::Map(m) if m.map.len() == 1
        ));
        assert_eq!(as_string(&s("x/y")).as_deref(), Some("x/y"));
        let big = parse("123456789012345678901234567890").unwrap();
        assert!(matches!(big, Term::BigInteger(_)));
    }

    #[test]
    fn what_only_an_evaluator_reads_is_refused_with_its_line() {
        let e = parse("[{a,\n X}]").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("variable"), "{e}");
        assert!(parse("fun m:f/3").is_err());
        assert!(parse("f(1)").is_err());
        assert!(parse("[a] [b]").is_err());
        assert!(parse("{a").is_err());
        assert!(parse("\"abc").is_err());
        let deep = "[".repeat(1000);
        assert!(parse(&deep).is_err());
    }
}
