//! Erlang term syntax, as `file:consult/1` and `erl_parse:parse_term/1` read
//! it: atoms (bare and quoted), integers (`16#ff`, `$a`), floats, strings,
//! tuples, proper and improper lists, binaries of strings and bytes, maps, `%`
//! comments, and the `.` that ends a term.
//!
//! It owns reading configuration written for the BEAM (OTP's
//! `ssl_dist_optfile`, `sys.config`-style files) into [`Term`]s. It must never
//! evaluate anything: variables, funs, records, operators and macros are
//! refused with the line they are on, so a file that only the BEAM's
//! evaluator could read fails with a message rather than a guess.
//!
//! Strings become lists of their characters' code points, as in Erlang
//! (`"ab"` is `[97,98]`); [`as_string`] reads them back.

use std::fmt;

use super::{Term, Tuple};

/// Why a text is not one Erlang term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Reads one term, optionally followed by `.`, with nothing after it but
/// whitespace and comments.
pub fn parse_term(text: &str) -> Result<Term, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
    };
    let term = p.term(0)?;
    p.skip_space();
    if p.peek() == Some('.') {
        p.at += 1;
    }
    p.skip_space();
    if let Some(c) = p.peek() {
        return Err(p.error(format!("unexpected {c:?} after the term")));
    }
    Ok(term)
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

/// Deep enough for any configuration; a deeper text is refused rather than
/// overflowing the stack.
const MAX_DEPTH: usize = 200;

struct Parser {
    chars: Vec<char>,
    at: usize,
    line: usize,
}

impl Parser {
    fn error(&self, message: impl fmt::Display) -> ParseError {
        ParseError {
            line: self.line,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.at + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == '%' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, want: &str) -> Result<(), ParseError> {
        self.skip_space();
        for w in want.chars() {
            match self.peek() {
                Some(c) if c == w => {
                    self.bump();
                }
                Some(c) => return Err(self.error(format!("expected {want:?}, found {c:?}"))),
                None => return Err(self.error(format!("expected {want:?}, found the end"))),
            }
        }
        Ok(())
    }

    /// Whether the next non-space text is `s` (consumed when it is).
    fn eat(&mut self, s: &str) -> bool {
        self.skip_space();
        let n = s.chars().count();
        if self.chars.len() >= self.at + n
            && s.chars()
                .eq(self.chars[self.at..self.at + n].iter().copied())
        {
            for _ in 0..n {
                self.bump();
            }
            true
        } else {
            false
        }
    }

    fn term(&mut self, depth: usize) -> Result<Term, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error("terms nested too deep"));
        }
        self.skip_space();
        let Some(c) = self.peek() else {
            return Err(self.error("expected a term, found the end"));
        };
        match c {
            '{' => {
                self.bump();
                let elements = self.sequence('}', depth)?;
                Ok(Term::Tuple(Tuple::from(elements)))
            }
            '[' => {
                self.bump();
                self.list(depth)
            }
            '#' => {
                self.bump();
                self.expect("{")?;
                self.map(depth)
            }
            '<' if self.peek_at(1) == Some('<') => {
                self.at += 2;
                self.binary()
            }
            '"' => {
                let mut s = String::new();
                // Adjacent strings are one string, as the BEAM reads them.
                loop {
                    self.skip_space();
                    if self.peek() != Some('"') {
                        break;
                    }
                    self.bump();
                    s.push_str(&self.quoted('"')?);
                }
                Ok(super::list(
                    s.chars().map(|c| super::int(c as i64)).collect(),
                ))
            }
            '\'' => {
                self.bump();
                let name = self.quoted('\'')?;
                Ok(super::atom(&name))
            }
            '$' => {
                self.bump();
                let c = match self.bump() {
                    Some('\\') => self.escape()?,
                    Some(c) => c,
                    None => return Err(self.error("a character after $")),
                };
                Ok(super::int(c as i64))
            }
            '-' | '+' => {
                self.bump();
                let n = self.number()?;
                Ok(if c == '-' { negate(n) } else { n })
            }
            c if c.is_ascii_digit() => self.number(),
            c if c.is_lowercase() => {
                let word = self.word();
                if self.eat("(") {
                    return Err(self.error(format!(
                        "{word}(...): calls are not terms; only literal terms are read"
                    )));
                }
                if word == "fun" {
                    return Err(self.error("funs are not terms; only literal terms are read"));
                }
                Ok(super::atom(&word))
            }
            c if c.is_uppercase() || c == '_' => {
                let word = self.word();
                Err(self.error(format!("{word} is a variable; only literal terms are read")))
            }
            other => Err(self.error(format!("unexpected {other:?}"))),
        }
    }

    fn word(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '@' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    /// Elements separated by commas up to `close` (consumed).
    fn sequence(&mut self, close: char, depth: usize) -> Result<Vec<Term>, ParseError> {
        let mut out = Vec::new();
        if self.eat(&close.to_string()) {
            return Ok(out);
        }
        loop {
            out.push(self.term(depth + 1)?);
            if self.eat(",") {
                continue;
            }
            self.expect(&close.to_string())?;
            return Ok(out);
        }
    }

    fn list(&mut self, depth: usize) -> Result<Term, ParseError> {
        let mut elements = Vec::new();
        if self.eat("]") {
            return Ok(super::nil());
        }
        loop {
            elements.push(self.term(depth + 1)?);
            if self.eat(",") {
                continue;
            }
            if self.eat("|") {
                let tail = self.term(depth + 1)?;
                self.expect("]")?;
                return Ok(match tail {
                    Term::List(t) => {
                        elements.extend(t.elements);
                        super::list(elements)
                    }
                    tail => Term::ImproperList(super::ImproperList {
                        elements,
                        last: Box::new(tail),
                    }),
                });
            }
            self.expect("]")?;
            return Ok(super::list(elements));
        }
    }

    fn map(&mut self, depth: usize) -> Result<Term, ParseError> {
        let mut pairs = Vec::new();
        if !self.eat("}") {
            loop {
                let k = self.term(depth + 1)?;
                self.expect("=>")?;
                let v = self.term(depth + 1)?;
                pairs.push((k, v));
                if self.eat(",") {
                    continue;
                }
                self.expect("}")?;
                break;
            }
        }
        Ok(Term::Map(pairs.into_iter().collect()))
    }

    /// `<<...>>` after its opening: strings and bytes, comma-separated.
    fn binary(&mut self) -> Result<Term, ParseError> {
        let mut bytes = Vec::new();
        if !self.eat(">>") {
            loop {
                self.skip_space();
                match self.peek() {
                    Some('"') => {
                        self.bump();
                        let s = self.quoted('"')?;
                        // Without a /utf8 type each character is one byte.
                        for c in s.chars() {
                            bytes.push(c as u32 as u8);
                        }
                    }
                    _ => {
                        let n = self.term(MAX_DEPTH)?;
                        match super::as_i64(&n).and_then(|v| u8::try_from(v).ok()) {
                            Some(b) => bytes.push(b),
                            None => {
                                return Err(
                                    self.error("a binary takes strings and bytes (0..255) only")
                                )
                            }
                        }
                    }
                }
                if self.eat(",") {
                    continue;
                }
                self.expect(">>")?;
                break;
            }
        }
        Ok(super::binary(bytes))
    }

    /// The text of a quoted string or atom after its opening quote.
    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error(format!("unterminated {quote}...{quote}"))),
                Some(c) if c == quote => return Ok(s),
                Some('\\') => s.push(self.escape()?),
                Some(c) => s.push(c),
            }
        }
    }

    /// One escape sequence after its backslash.
    fn escape(&mut self) -> Result<char, ParseError> {
        let Some(c) = self.bump() else {
            return Err(self.error("an escape at the end"));
        };
        Ok(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            's' => ' ',
            'e' => '\x1b',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            'd' => '\x7f',
            '0'..='7' => {
                let mut v = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.bump();
                        }
                        None => break,
                    }
                }
                char::from_u32(v).ok_or_else(|| self.error("bad octal escape"))?
            }
            'x' => {
                let mut digits = String::new();
                if self.peek() == Some('{') {
                    self.bump();
                    while let Some(d) = self.bump() {
                        if d == '}' {
                            break;
                        }
                        digits.push(d);
                    }
                } else {
                    for _ in 0..2 {
                        if let Some(d) = self.bump() {
                            digits.push(d);
                        }
                    }
                }
                u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| self.error(format!("bad hex escape \\x{digits}")))?
            }
            '^' => {
                let Some(k) = self.bump() else {
                    return Err(self.error("a control escape at the end"));
                };
                char::from_u32((k as u32) & 0x1f).unwrap_or('\0')
            }
            other => other,
        })
    }

    /// An unsigned integer (`123`, `16#ff`, `1_000`) or float (`1.5e3`).
    fn number(&mut self) -> Result<Term, ParseError> {
        let mut digits = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || c == '_' {
                digits.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let digits: String = digits.chars().filter(|&c| c != '_').collect();
        if digits.is_empty() {
            return Err(self.error("expected a number"));
        }
        if self.peek() == Some('#') {
            self.bump();
            let base: u32 = digits
                .parse()
                .ok()
                .filter(|b| (2..=36).contains(b))
                .ok_or_else(|| self.error(format!("{digits}#: bases go from 2 to 36")))?;
            let mut value = String::new();
            while let Some(c) = self.peek() {
                if c.is_digit(base) || c == '_' {
                    if c != '_' {
                        value.push(c);
                    }
                    self.bump();
                } else {
                    break;
                }
            }
            return num_bigint::BigInt::parse_bytes(value.as_bytes(), base)
                .map(big_to_term)
                .ok_or_else(|| self.error(format!("bad base-{base} integer")));
        }
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            let mut text = digits;
            text.push('.');
            self.bump();
            while let Some(c) = self.peek() {
                let exp = (c == 'e' || c == 'E')
                    && self
                        .peek_at(1)
                        .is_some_and(|n| n.is_ascii_digit() || n == '-' || n == '+');
                if c.is_ascii_digit()
                    || exp
                    || ((c == '-' || c == '+') && text.ends_with(['e', 'E']))
                {
                    text.push(c);
                    self.bump();
                } else {
                    break;
                }
            }
            return text
                .parse::<f64>()
                .map(|value| Term::Float(super::Float { value }))
                .map_err(|_| self.error(format!("bad float {text}")));
        }
        num_bigint::BigInt::parse_bytes(digits.as_bytes(), 10)
            .map(big_to_term)
            .ok_or_else(|| self.error("bad integer"))
    }
}

fn big_to_term(n: num_bigint::BigInt) -> Term {
    match i64::try_from(&n) {
        Ok(v) => super::int(v),
        Err(_) => Term::BigInteger(super::BigInteger { value: n }),
    }
}

fn negate(t: Term) -> Term {
    match t {
        Term::FixInteger(i) => super::int(-(i.value as i64)),
        Term::Float(f) => Term::Float(super::Float { value: -f.value }),
        Term::BigInteger(b) => Term::BigInteger(super::BigInteger { value: -b.value }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, int, list, tuple};

    fn s(text: &str) -> Term {
        list(text.chars().map(|c| int(c as i64)).collect())
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
        let t = parse_term(text).unwrap();
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
        assert_eq!(parse_term("16#ff.").unwrap(), int(255));
        assert_eq!(parse_term("-12").unwrap(), int(-12));
        assert_eq!(parse_term("$a").unwrap(), int(97));
        assert_eq!(parse_term("1_000").unwrap(), int(1000));
        assert_eq!(
            parse_term("2.5e1").unwrap(),
            Term::Float(crate::term::Float { value: 25.0 })
        );
        assert_eq!(parse_term(r#""a\nb" "c""#).unwrap(), s("a\nbc"));
        assert_eq!(parse_term("'hello world'").unwrap(), atom("hello world"));
        assert_eq!(
            parse_term(r#"<<"ab", 1>>"#).unwrap(),
            crate::term::binary(vec![97, 98, 1])
        );
        assert_eq!(parse_term("[1|[2]]").unwrap(), list(vec![int(1), int(2)]));
        assert!(matches!(
            parse_term("#{a => 1}").unwrap(),
            Term::Map(m) if m.map.len() == 1
        ));
        assert_eq!(as_string(&s("x/y")).as_deref(), Some("x/y"));
        let big = parse_term("123456789012345678901234567890").unwrap();
        assert!(matches!(big, Term::BigInteger(_)));
    }

    #[test]
    fn what_only_an_evaluator_reads_is_refused_with_its_line() {
        let e = parse_term("[{a,\n X}]").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("variable"), "{e}");
        assert!(parse_term("fun m:f/3").unwrap_err().message.contains("fun"));
        assert!(parse_term("f(1)").unwrap_err().message.contains("call"));
        assert!(parse_term("[a] [b]").is_err());
        assert!(parse_term("{a").is_err());
        assert!(parse_term("\"abc").is_err());
        let deep = "[".repeat(1000);
        assert!(parse_term(&deep).is_err());
    }
}
