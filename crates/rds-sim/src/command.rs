//! Parsing one incoming RouterOS command line into a [`Request`].
//!
//! Only the subset the driver sends is understood; everything else gets the error RouterOS
//! would print, so a driver bug shows up as a failed command rather than a silent success.

use std::fmt;

/// Comparison in a `where` / `[find …]` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `key=value`: literal equality.
    Eq,
    /// `key~"regex"`: RouterOS regex match (see [`Pattern`]).
    Match(Pattern),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub key: String,
    pub op: Op,
    pub value: String,
}

impl Cond {
    /// A missing property never matches (RouterOS compares against nothing).
    pub fn matches(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        match &self.op {
            Op::Eq => v == self.value,
            Op::Match(p) => p.is_match(v),
        }
    }
}

/// True when every condition holds for the item described by `get`.
pub fn all_match<'a>(conds: &[Cond], get: impl Fn(&str) -> Option<&'a str>) -> bool {
    conds.iter().all(|c| c.matches(get(&c.key)))
}

/// A parsed property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Find(Vec<Cond>),
}

/// One `key=value` argument, with the column it started at for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub key: String,
    pub value: Value,
    pub column: usize,
}

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    DiskAdd(Vec<Arg>),
    DiskPrint(Vec<Cond>),
    DiskSet { find: Vec<Cond>, args: Vec<Arg> },
    DiskRemove(Vec<Cond>),
    FilePrint(Vec<Cond>),
    FileRemove(Vec<Cond>),
    SystemResource,
    SystemIdentity,
}

/// Errors in RouterOS's own words; `Display` is the text printed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Syntax { column: usize },
    BadCommand(String),
    ExpectedEnd { column: usize },
    Failure(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax { column } => write!(f, "syntax error (line 1 column {column})"),
            ParseError::BadCommand(word) => write!(f, "bad command name {word}"),
            ParseError::ExpectedEnd { column } => {
                write!(f, "expected end of command (line 1 column {column})")
            }
            ParseError::Failure(text) => write!(f, "failure: {text}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String, usize),
    Pair {
        key: String,
        tilde: bool,
        value: Value,
        column: usize,
    },
    Find(Vec<Cond>, usize),
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    _line: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(line: &'a str) -> Self {
        Lexer {
            chars: line.chars().collect(),
            pos: 0,
            _line: line,
        }
    }

    fn column(&self) -> usize {
        self.pos + 1
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn tokens(&mut self, until_bracket: bool) -> Result<Vec<Token>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None if until_bracket => {
                    return Err(ParseError::Syntax {
                        column: self.column(),
                    });
                }
                None => return Ok(out),
                Some(']') if until_bracket => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(']') | Some(';') | Some('{') | Some('}') | Some('=') | Some('~') => {
                    return Err(ParseError::Syntax {
                        column: self.column(),
                    });
                }
                Some('[') => {
                    let column = self.column();
                    out.push(Token::Find(self.find()?, column));
                }
                Some(_) => out.push(self.word_or_pair()?),
            }
        }
    }

    /// `[find slot=x]` or `[find where slot=x]`.
    fn find(&mut self) -> Result<Vec<Cond>, ParseError> {
        let open = self.column();
        self.pos += 1;
        let inner = self.tokens(true)?;
        let mut it = inner.into_iter();
        match it.next() {
            Some(Token::Word(w, _)) if w == "find" => {}
            _ => return Err(ParseError::Syntax { column: open + 1 }),
        }
        conditions(it.collect())
    }

    fn bare(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, '=' | '~' | '[' | ']' | '"' | ';') {
                break;
            }
            s.push(c);
            self.pos += 1;
        }
        s
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.column();
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(ParseError::Syntax { column: open }),
                Some('"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                        None => return Err(ParseError::Syntax { column: open }),
                    }
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn word_or_pair(&mut self) -> Result<Token, ParseError> {
        let column = self.column();
        if self.peek() == Some('"') {
            return Err(ParseError::Syntax { column });
        }
        let key = self.bare();
        let tilde = match self.peek() {
            Some('=') => false,
            Some('~') => true,
            _ => {
                if key.is_empty() {
                    return Err(ParseError::Syntax { column });
                }
                return Ok(Token::Word(key, column));
            }
        };
        if key.is_empty() {
            return Err(ParseError::Syntax { column });
        }
        self.pos += 1;
        let value = match self.peek() {
            Some('"') => Value::Str(self.quoted()?),
            Some('[') => Value::Find(self.find()?),
            _ => Value::Str(self.bare()),
        };
        Ok(Token::Pair {
            key,
            tilde,
            value,
            column,
        })
    }
}

/// Turns `slot=x and name~"^p"` tokens into conditions.
fn conditions(tokens: Vec<Token>) -> Result<Vec<Cond>, ParseError> {
    let mut out = Vec::new();
    let mut first = true;
    for t in tokens {
        match t {
            Token::Word(w, _) if (first && w == "where") || w == "and" => {}
            Token::Pair {
                key,
                tilde,
                value: Value::Str(value),
                column,
            } => {
                let op = if tilde {
                    Op::Match(Pattern::parse(&value).map_err(|_| ParseError::Syntax {
                        column: column + key.len() + 1,
                    })?)
                } else {
                    Op::Eq
                };
                out.push(Cond { key, op, value });
            }
            Token::Word(_, column) | Token::Pair { column, .. } | Token::Find(_, column) => {
                return Err(ParseError::ExpectedEnd { column });
            }
        }
        first = false;
    }
    Ok(out)
}

fn args(tokens: Vec<Token>) -> Result<Vec<Arg>, ParseError> {
    tokens
        .into_iter()
        .map(|t| match t {
            Token::Pair {
                key,
                tilde: false,
                value,
                column,
            } => Ok(Arg { key, value, column }),
            Token::Word(_, column) | Token::Pair { column, .. } | Token::Find(_, column) => {
                Err(ParseError::ExpectedEnd { column })
            }
        })
        .collect()
}

/// `print`, `print detail`, `print detail where …`, `print where …`.
fn print_conditions(tokens: Vec<Token>) -> Result<Vec<Cond>, ParseError> {
    let mut rest = tokens.into_iter().peekable();
    if matches!(rest.peek(), Some(Token::Word(w, _)) if w == "detail") {
        rest.next();
    }
    match rest.peek() {
        None => Ok(Vec::new()),
        Some(Token::Word(w, _)) if w == "where" => conditions(rest.collect()),
        Some(Token::Word(_, c)) | Some(Token::Pair { column: c, .. }) | Some(Token::Find(_, c)) => {
            Err(ParseError::ExpectedEnd { column: *c })
        }
    }
}

/// `[find …]` target: the first token of `set`/`remove`.
fn find_target(tokens: Vec<Token>, verb_end: usize) -> Result<(Vec<Cond>, Vec<Token>), ParseError> {
    let mut it = tokens.into_iter();
    match it.next() {
        Some(Token::Find(conds, _)) => Ok((conds, it.collect())),
        Some(Token::Word(_, column)) | Some(Token::Pair { column, .. }) => {
            Err(ParseError::Failure(format!(
                "no item specified (use [find ...]) at column {column}"
            )))
        }
        None => Err(ParseError::Failure(format!(
            "no item specified at column {verb_end}"
        ))),
    }
}

/// Parses one command line as the RouterOS CLI would.
pub fn parse(line: &str) -> Result<Request, ParseError> {
    let tokens = Lexer::new(line).tokens(false)?;
    // `/disk/print` and `/disk print` are the same command; split slash paths into words.
    let mut words: Vec<(String, usize)> = Vec::new();
    let mut first_raw: Option<String> = None;
    let mut rest = Vec::new();
    let mut in_path = true;
    for t in tokens {
        match t {
            Token::Word(w, col) if in_path => {
                let absolute = w.starts_with('/');
                if words.is_empty() && !absolute {
                    return Err(ParseError::BadCommand(w));
                }
                if first_raw.is_none() {
                    first_raw = Some(w.clone());
                }
                for part in w.split('/').filter(|p| !p.is_empty()) {
                    words.push((part.to_string(), col));
                }
                if is_verb(words.last().map(|(w, _)| w.as_str())) {
                    in_path = false;
                }
            }
            other => {
                in_path = false;
                rest.push(other);
            }
        }
    }
    let Some((first, _)) = words.first() else {
        return Err(ParseError::Syntax { column: 1 });
    };
    let path: Vec<&str> = words.iter().map(|(w, _)| w.as_str()).collect();
    let verb_col = words.last().map_or(1, |(w, c)| c + w.len());
    match path.as_slice() {
        ["disk", "add"] => Ok(Request::DiskAdd(args(rest)?)),
        ["disk", "print"] => Ok(Request::DiskPrint(print_conditions(rest)?)),
        ["disk", "set"] => {
            let (find, rest) = find_target(rest, verb_col)?;
            Ok(Request::DiskSet {
                find,
                args: args(rest)?,
            })
        }
        ["disk", "remove"] => {
            let (find, rest) = find_target(rest, verb_col)?;
            args(rest)?;
            Ok(Request::DiskRemove(find))
        }
        ["file", "print"] => Ok(Request::FilePrint(print_conditions(rest)?)),
        ["file", "remove"] => {
            let (find, rest) = find_target(rest, verb_col)?;
            args(rest)?;
            Ok(Request::FileRemove(find))
        }
        ["system", "resource", "print"] if rest.is_empty() => Ok(Request::SystemResource),
        ["system", "identity", "print"] if rest.is_empty() => Ok(Request::SystemIdentity),
        ["disk" | "file", ..] | ["system", "resource" | "identity", ..] => {
            // Known menu, unknown command within it: RouterOS names the offending word.
            let bad = path.get(if path[0] == "system" { 2 } else { 1 });
            Err(ParseError::BadCommand(
                bad.map_or_else(|| first.clone(), |w| (*w).to_string()),
            ))
        }
        _ => Err(ParseError::BadCommand(first_raw.unwrap_or_default())),
    }
}

fn is_verb(word: Option<&str>) -> bool {
    matches!(word, Some("add" | "print" | "set" | "remove"))
}

/// The RouterOS regex subset the driver needs: `^`/`$` anchors, literals, `\x` escapes,
/// `.` and bracket classes like `[.]`. Anything else is refused rather than misread, so an
/// unexpected pattern from the driver fails loudly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    start: bool,
    end: bool,
    atoms: Vec<Atom>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Lit(char),
    Any,
    Class(Vec<char>),
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Lit(l) => *l == c,
            Atom::Any => true,
            Atom::Class(set) => set.contains(&c),
        }
    }
}

impl Pattern {
    pub fn parse(re: &str) -> Result<Pattern, String> {
        let mut chars = re.chars().peekable();
        let start = chars.peek() == Some(&'^');
        if start {
            chars.next();
        }
        let mut atoms = Vec::new();
        let mut end = false;
        while let Some(c) = chars.next() {
            match c {
                '$' if chars.peek().is_none() => end = true,
                '\\' => atoms.push(Atom::Lit(chars.next().ok_or("trailing backslash")?)),
                '.' => atoms.push(Atom::Any),
                '[' => {
                    let mut set = Vec::new();
                    loop {
                        match chars.next() {
                            Some(']') if !set.is_empty() => break,
                            Some('^') if set.is_empty() => return Err("negated class".into()),
                            Some('\\') => set.push(chars.next().ok_or("trailing backslash")?),
                            Some(c) => set.push(c),
                            None => return Err("unterminated class".into()),
                        }
                    }
                    atoms.push(Atom::Class(set));
                }
                '*' | '+' | '?' | '(' | ')' | '|' | '{' | '}' | '^' | '$' | ']' => {
                    return Err(format!("unsupported regex operator {c:?}"));
                }
                c => atoms.push(Atom::Lit(c)),
            }
        }
        Ok(Pattern { start, end, atoms })
    }

    pub fn is_match(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        let n = self.atoms.len();
        if chars.len() < n {
            return false;
        }
        let last_start = chars.len() - n;
        let starts: Vec<usize> = match (self.start, self.end) {
            (true, true) if chars.len() != n => return false,
            (true, _) => vec![0],
            (false, true) => vec![last_start],
            (false, false) => (0..=last_start).collect(),
        };
        starts.into_iter().any(|i| {
            self.atoms
                .iter()
                .zip(&chars[i..])
                .all(|(a, c)| a.matches(*c))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eq(key: &str, value: &str) -> Cond {
        Cond {
            key: key.into(),
            op: Op::Eq,
            value: value.into(),
        }
    }

    #[test]
    fn disk_add_with_quoted_and_find_values() {
        let r = parse(r#"/disk add type=file slot="a \"b\"" copy-from=[find slot=src]"#).unwrap();
        let Request::DiskAdd(args) = r else {
            panic!("not an add: {r:?}")
        };
        assert_eq!(args[1].key, "slot");
        assert_eq!(args[1].value, Value::Str("a \"b\"".into()));
        assert_eq!(args[2].value, Value::Find(vec![eq("slot", "src")]));
    }

    #[test]
    fn print_where_regex_and_slash_path() {
        let r = parse(r#"/disk/print detail where slot~"^pvc-""#).unwrap();
        let Request::DiskPrint(conds) = r else {
            panic!("not a print: {r:?}")
        };
        assert!(conds[0].matches(Some("pvc-1")));
        assert!(!conds[0].matches(Some("snap-pvc-1")));
    }

    #[test]
    fn set_needs_find_and_keeps_args() {
        let r = parse("/disk set [find where slot=x] file-size=10G").unwrap();
        assert_eq!(
            r,
            Request::DiskSet {
                find: vec![eq("slot", "x")],
                args: vec![Arg {
                    key: "file-size".into(),
                    value: Value::Str("10G".into()),
                    column: 31
                }]
            }
        );
    }

    #[test]
    fn errors_use_routeros_wording() {
        assert_eq!(
            parse(r#"/disk print where slot="open"#)
                .unwrap_err()
                .to_string(),
            "syntax error (line 1 column 24)"
        );
        assert_eq!(
            parse("/ip route print").unwrap_err().to_string(),
            "bad command name /ip"
        );
        assert_eq!(
            parse("ls -l").unwrap_err().to_string(),
            "bad command name ls"
        );
        assert_eq!(
            parse("/disk frob").unwrap_err().to_string(),
            "bad command name frob"
        );
        assert_eq!(
            parse("/disk print detail bogus").unwrap_err().to_string(),
            "expected end of command (line 1 column 20)"
        );
    }

    #[test]
    fn pattern_subset() {
        let p = Pattern::parse("^storage-pool/metal-csi/pvc-.*").err();
        assert!(p.is_some(), "quantifiers are refused, not misread");
        let p = Pattern::parse(r"^a[.]img$").unwrap();
        assert!(p.is_match("a.img"));
        assert!(!p.is_match("aximg"));
        assert!(!p.is_match("a.img2"));
        let p = Pattern::parse("pvc").unwrap();
        assert!(p.is_match("snap-pvc-1"));
        let p = Pattern::parse(r"\.img$").unwrap();
        assert!(p.is_match("x.img"));
        assert!(!p.is_match("ximg"));
    }
}
