//! The variable syntax of Flux's post-build substitution (the `envsubst` of fluxcd/pkg, a fork
//! of drone/envsubst), with its exact parsing: `${var}`, `${var:=d}`, `${var:-d}`, `${var=d}`,
//! `${var:pos}`, `${var:pos:len}`, `${var/a/b}`, `${var//a/b}`, `${var/#a/b}`, `${var/%a/b}`,
//! `${var#p}`, `${var##p}`, `${var%p}`, `${var%%p}`, `${var^}`, `${var^^}`, `${var,}`,
//! `${var,,}`, `${#var}`; `$$` writes `$` (so `$${var}` writes `${var}`), `$var` is left alone.
//!
//! The scanner mirrors the original's state machine (modes, accept rules, a cursor over the text
//! that escapes are cut out of), because its corner cases are what Flux users' manifests rely
//! on: for instance `${var-d}` and `${var//a}` are errors, a default may hold another
//! reference, and values are byte strings (`${#var}` counts bytes).

use super::pattern;

/// Why a text could not be substituted. Never carries the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// A reference that does not parse: the line it starts on (1-based) and what is wrong.
    Syntax {
        /// The line of the text where the reference starts.
        line: usize,
        /// The parser's complaint.
        why: &'static str,
    },
    /// A variable is referenced without a default and has no value.
    Missing {
        /// The line of the text where the reference starts.
        line: usize,
        /// The variable name as written.
        var: String,
    },
    /// The substituted text would be longer than the budget allows.
    TooLarge {
        /// The line of the text where the reference that crossed it starts.
        line: usize,
    },
    /// The budget's deadline passed (a pattern or replacement over a huge value).
    Deadline {
        /// The line of the text where the reference being worked on starts.
        line: usize,
    },
}

/// How deeply references may nest in one another (`${a:=${b:=${c}}}` is three deep): far
/// beyond what a manifest needs, and what keeps the parser's and evaluator's recursion small.
pub const MAX_NESTING: usize = 64;

/// What one substitution may spend: output bytes and time.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes the substituted text may still take.
    pub bytes: usize,
    /// When to give up, if ever.
    pub deadline: Option<std::time::Instant>,
}

impl Budget {
    fn late(&self) -> bool {
        self.deadline.is_some_and(|d| std::time::Instant::now() > d)
    }
}

/// Why a budgeted function stopped.
enum Spent {
    Bytes,
    Time,
}

const EOF: char = '\0';

const SCAN_IDENT: u8 = 1;
const SCAN_LBRACK: u8 = 1 << 1;
const SCAN_RBRACK: u8 = 1 << 2;
const SCAN_ESCAPE: u8 = 1 << 3;

const ESCAPE_DOLLAR: u8 = 1;
const ESCAPE_BACKSLASH: u8 = 1 << 1;

const BAD_SUBSTITUTION: &str = "bad substitution";
const MISSING_CLOSING_BRACE: &str = "missing closing brace";
const BAD_VARIABLE_NAME: &str = "unable to parse variable name";
const BAD_FUNCTION_ARGUMENT: &str = "unable to parse substitution within function";
const BAD_DEFAULT: &str = "unable to parse default function";
const TOO_DEEP: &str = "references nested more than 64 deep";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    Illegal,
    Eof,
    Ident,
    Lbrack,
    Rbrack,
}

/// Which characters the scanner takes into an identifier token; `i` is the byte offset after
/// the character within the token.
#[derive(Clone, Copy)]
enum Accept {
    Rune,
    Ident,
    Colon,
    OneHash,
    NotClosing,
    HashFunc,
    PercentFunc,
    DefaultFunc,
    ReplaceFunc,
    OneEqual,
    OneColon,
    RejectColonClose,
    Slash,
    NotSlash,
    CasingFunc,
}

impl Accept {
    fn accepts(self, r: char, i: usize) -> bool {
        match self {
            Accept::Rune => true,
            Accept::Ident => r.is_alphabetic() || is_go_digit(r) || r == '_',
            Accept::Colon => r == ':',
            Accept::OneHash => r == '#' && i == 1,
            Accept::NotClosing => r != '}',
            Accept::HashFunc => r == '#' && i < 3,
            Accept::PercentFunc => r == '%' && i < 3,
            Accept::DefaultFunc => {
                (i == 1 && r == ':') || (i == 2 && matches!(r, '=' | '-' | '?' | '+'))
            }
            Accept::ReplaceFunc => (i == 1 && r == '/') || (i == 2 && matches!(r, '/' | '#' | '%')),
            Accept::OneEqual => i == 1 && r == '=',
            Accept::OneColon => i == 1 && r == ':',
            Accept::RejectColonClose => r != ':' && r != '}',
            Accept::Slash => r == '/',
            Accept::NotSlash => r != '/',
            Accept::CasingFunc => (r == ',' || r == '^') && i < 3,
        }
    }
}

/// Go's `unicode.IsDigit` (category Nd). Non-ASCII numbers of other categories (`½`, `Ⅻ`)
/// are taken as digits too: Rust's standard library has no category lookup, and names with
/// them cannot be given values anyway (variable names are ASCII).
fn is_go_digit(r: char) -> bool {
    r.is_ascii_digit() || (!r.is_ascii() && r.is_numeric())
}

/// The cursor over the text being parsed. Escapes are cut out of `buf` as they are read.
struct Scanner {
    buf: Vec<u8>,
    pos: usize,
    start: usize,
    width: usize,
    mode: u8,
    escapes: u8,
    accept: Accept,
}

impl Scanner {
    fn read(&mut self) -> char {
        if self.pos >= self.buf.len() {
            self.width = 0;
            return EOF;
        }
        let (r, w) = decode(&self.buf[self.pos..]);
        self.width = w;
        self.pos += w;
        r
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(self.width);
    }

    fn skip(&mut self) {
        self.buf.remove(self.pos - 1);
    }

    fn peek(&mut self) -> char {
        let r = self.read();
        self.unread();
        r
    }

    fn text(&self) -> Vec<u8> {
        self.buf[self.start..self.pos].to_vec()
    }

    fn scan(&mut self) -> Token {
        self.start = self.pos;
        let r = self.read();
        if r == EOF {
            Token::Eof
        } else if self.scan_lbrack(r) {
            Token::Lbrack
        } else if self.scan_rbrack(r) {
            Token::Rbrack
        } else if self.scan_ident(r) {
            Token::Ident
        } else {
            Token::Illegal
        }
    }

    fn scan_ident(&mut self, r: char) -> bool {
        if self.mode & SCAN_IDENT == 0 {
            return false;
        }
        if self.scan_escaped(r) {
            self.skip();
        } else if !self.accept.accepts(r, self.pos - self.start) {
            return false;
        }
        loop {
            let r = self.read();
            if r == EOF {
                self.unread();
                break;
            }
            if self.scan_lbrack(r) {
                self.unread();
                self.unread();
                break;
            }
            if self.scan_escaped(r) {
                self.skip();
                continue;
            }
            if !self.accept.accepts(r, self.pos - self.start) {
                self.unread();
                break;
            }
        }
        true
    }

    fn scan_lbrack(&mut self, r: char) -> bool {
        if self.mode & SCAN_LBRACK == 0 {
            return false;
        }
        if r == '$' {
            if self.read() == '{' {
                return true;
            }
            self.unread();
        }
        false
    }

    fn scan_rbrack(&self, r: char) -> bool {
        self.mode & SCAN_RBRACK != 0 && r == '}'
    }

    fn scan_escaped(&mut self, r: char) -> bool {
        if self.mode & SCAN_ESCAPE == 0 {
            return false;
        }
        if r == '$' && self.escapes & ESCAPE_DOLLAR != 0 && self.peek() == '$' {
            return true;
        }
        r == '\\' && self.escapes & ESCAPE_BACKSLASH != 0 && matches!(self.peek(), '/' | '\\')
    }
}

/// The character at the start of `b` and its width; invalid UTF-8 reads as U+FFFD of width 1.
pub(super) fn decode(b: &[u8]) -> (char, usize) {
    let w = match b[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return ('\u{fffd}', 1),
    };
    match b.get(..w).and_then(|s| std::str::from_utf8(s).ok()) {
        Some(s) => (s.chars().next().unwrap_or('\u{fffd}'), w),
        None => ('\u{fffd}', 1),
    }
}

/// A parsed text: literal runs and references.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(Vec<u8>),
    Func {
        /// Byte offset of the `${` in the (escape-cut) text, for error lines.
        at: usize,
        param: String,
        name: String,
        args: Vec<Node>,
    },
}

/// A text parsed for substitution.
pub struct Template {
    nodes: Vec<Node>,
    /// The text after escapes were cut, where reference offsets point.
    text: Vec<u8>,
}

struct Parser {
    s: Scanner,
    /// References open around the one being parsed.
    depth: usize,
}

/// Parses `text`; a reference that does not parse is an error naming its line.
pub fn parse(text: &str) -> Result<Template, EvalError> {
    let mut p = Parser {
        s: Scanner {
            buf: text.as_bytes().to_vec(),
            pos: 0,
            start: 0,
            width: 0,
            mode: 0,
            escapes: 0,
            accept: Accept::Rune,
        },
        depth: 0,
    };
    let mut nodes = Vec::new();
    loop {
        p.s.accept = Accept::Rune;
        p.s.mode = SCAN_IDENT | SCAN_LBRACK | SCAN_ESCAPE;
        p.s.escapes = ESCAPE_DOLLAR;
        match p.s.scan() {
            Token::Ident => nodes.push(Node::Text(p.s.text())),
            Token::Eof => break,
            Token::Lbrack => {
                let at = p.s.start;
                match p.func(at) {
                    Ok(n) => nodes.push(n),
                    Err(why) => {
                        return Err(EvalError::Syntax {
                            line: line_of(&p.s.buf, at),
                            why,
                        });
                    }
                }
            }
            _ => {
                return Err(EvalError::Syntax {
                    line: line_of(&p.s.buf, p.s.start),
                    why: BAD_SUBSTITUTION,
                });
            }
        }
    }
    Ok(Template {
        nodes,
        text: p.s.buf,
    })
}

fn line_of(buf: &[u8], at: usize) -> usize {
    buf[..at.min(buf.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

type Parsed = Result<Node, &'static str>;

fn func_node(at: usize, param: String, name: String, args: Vec<Node>) -> Node {
    Node::Func {
        at,
        param,
        name,
        args,
    }
}

impl Parser {
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.s.text()).into_owned()
    }

    fn func(&mut self, at: usize) -> Parsed {
        if self.depth >= MAX_NESTING {
            return Err(TOO_DEEP);
        }
        self.depth += 1;
        let parsed = self.func_inner(at);
        self.depth -= 1;
        parsed
    }

    fn func_inner(&mut self, at: usize) -> Parsed {
        self.s.escapes = ESCAPE_DOLLAR | ESCAPE_BACKSLASH;
        if self.s.peek() == '#' {
            return self.len_func(at);
        }
        self.s.accept = Accept::Ident;
        self.s.mode = SCAN_IDENT;
        if self.s.scan() != Token::Ident {
            return Err(BAD_VARIABLE_NAME);
        }
        let param = self.name();
        match self.s.peek() {
            ':' => return self.default_or_substr(at, param),
            '=' => return self.default_func(at, param),
            ',' | '^' => return self.casing_func(at, param),
            '/' => return self.replace_func(at, param),
            '#' => return self.remove_func(at, param, Accept::HashFunc),
            '%' => return self.remove_func(at, param, Accept::PercentFunc),
            _ => {}
        }
        self.s.accept = Accept::Ident;
        self.s.mode = SCAN_RBRACK;
        match self.s.scan() {
            Token::Rbrack => Ok(Node::Func {
                at,
                param,
                name: String::new(),
                args: Vec::new(),
            }),
            _ => Err(MISSING_CLOSING_BRACE),
        }
    }

    fn param(&mut self, accept: Accept, mode: u8) -> Parsed {
        self.s.accept = accept;
        self.s.mode = mode | SCAN_LBRACK;
        match self.s.scan() {
            Token::Lbrack => {
                let at = self.s.start;
                self.func(at)
            }
            Token::Ident | Token::Rbrack => Ok(Node::Text(self.s.text())),
            _ => Err(BAD_FUNCTION_ARGUMENT),
        }
    }

    /// Scans the operator of a function with `accept`, or fails with `err`.
    fn operator(&mut self, accept: Accept, err: &'static str) -> Result<String, &'static str> {
        self.s.accept = accept;
        self.s.mode = SCAN_IDENT;
        match self.s.scan() {
            Token::Ident => Ok(self.name()),
            _ => Err(err),
        }
    }

    fn default_or_substr(&mut self, at: usize, param: String) -> Parsed {
        self.s.read();
        let r = self.s.peek();
        self.s.unread();
        match r {
            '=' | '-' | '?' | '+' => self.default_func(at, param),
            _ => self.substr_func(at, param),
        }
    }

    fn substr_func(&mut self, at: usize, param: String) -> Parsed {
        let name = self.operator(Accept::OneColon, BAD_SUBSTITUTION)?;
        let mut args = vec![self.param(Accept::RejectColonClose, SCAN_IDENT)?];
        self.s.accept = Accept::Colon;
        self.s.mode = SCAN_IDENT | SCAN_RBRACK;
        match self.s.scan() {
            Token::Rbrack => {
                return Ok(func_node(at, param, name, args));
            }
            Token::Ident => {}
            _ => return Err(BAD_SUBSTITUTION),
        }
        args.push(self.param(Accept::NotClosing, SCAN_IDENT)?);
        self.close()?;
        Ok(func_node(at, param, name, args))
    }

    fn remove_func(&mut self, at: usize, param: String, accept: Accept) -> Parsed {
        let name = self.operator(accept, BAD_SUBSTITUTION)?;
        let args = vec![self.param(Accept::NotClosing, SCAN_IDENT)?];
        self.close()?;
        Ok(func_node(at, param, name, args))
    }

    fn replace_func(&mut self, at: usize, param: String) -> Parsed {
        let name = self.operator(Accept::ReplaceFunc, BAD_SUBSTITUTION)?;
        let mut args = vec![self.param(Accept::NotSlash, SCAN_IDENT | SCAN_ESCAPE)?];
        self.operator(Accept::Slash, BAD_SUBSTITUTION)?;
        if self.s.peek() != '}' {
            args.push(self.param(Accept::NotClosing, SCAN_IDENT | SCAN_ESCAPE)?);
        }
        self.close()?;
        Ok(func_node(at, param, name, args))
    }

    fn default_func(&mut self, at: usize, param: String) -> Parsed {
        let accept = if self.s.peek() == '=' {
            Accept::OneEqual
        } else {
            Accept::DefaultFunc
        };
        let name = self.operator(accept, BAD_DEFAULT)?;
        let mut args = Vec::new();
        while self.s.peek() != '}' {
            args.push(self.param(Accept::NotClosing, SCAN_IDENT)?);
        }
        self.close()?;
        Ok(func_node(at, param, name, args))
    }

    fn casing_func(&mut self, at: usize, param: String) -> Parsed {
        let name = self.operator(Accept::CasingFunc, BAD_SUBSTITUTION)?;
        self.close()?;
        Ok(func_node(at, param, name, Vec::new()))
    }

    fn len_func(&mut self, at: usize) -> Parsed {
        let name = self.operator(Accept::OneHash, BAD_SUBSTITUTION)?;
        let param = self.operator(Accept::Ident, BAD_SUBSTITUTION)?;
        self.close()?;
        Ok(func_node(at, param, name, Vec::new()))
    }

    fn close(&mut self) -> Result<(), &'static str> {
        self.s.mode = SCAN_RBRACK;
        if self.s.scan() == Token::Rbrack {
            Ok(())
        } else {
            Err(BAD_SUBSTITUTION)
        }
    }
}

impl Template {
    /// The text with every reference replaced. `lookup` gives a variable's value, or `None`
    /// when it is not set: then a reference without a default is an error.
    #[cfg(test)]
    pub fn execute(&self, lookup: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Vec<u8>, EvalError> {
        self.execute_within(
            lookup,
            Budget {
                bytes: usize::MAX,
                deadline: None,
            },
        )
    }

    /// Like [`Template::execute`], failing once the text would take more than `budget.bytes`
    /// or once its deadline has passed.
    pub fn execute_within(
        &self,
        lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
        budget: Budget,
    ) -> Result<Vec<u8>, EvalError> {
        let mut out = Vec::with_capacity(self.text.len().min(budget.bytes));
        for n in &self.nodes {
            self.eval(n, lookup, &budget, &mut out)?;
        }
        Ok(out)
    }

    fn eval(
        &self,
        node: &Node,
        lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
        budget: &Budget,
        out: &mut Vec<u8>,
    ) -> Result<(), EvalError> {
        let (at, param, name, args) = match node {
            Node::Text(t) => {
                if out.len().saturating_add(t.len()) > budget.bytes {
                    // A literal run sits at a reference's place only inside one; the
                    // template's own text is no longer than the input.
                    return Err(EvalError::TooLarge {
                        line: line_of(&self.text, self.text.len()),
                    });
                }
                out.extend_from_slice(t);
                return Ok(());
            }
            Node::Func {
                at,
                param,
                name,
                args,
            } => (at, param, name, args),
        };
        let line = || line_of(&self.text, *at);
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            let mut v = Vec::new();
            self.eval(a, lookup, budget, &mut v)?;
            values.push(v);
        }
        let value = match lookup(param) {
            Some(v) => v,
            None if is_default_op(name) => Vec::new(),
            None => {
                return Err(EvalError::Missing {
                    line: line(),
                    var: param.clone(),
                });
            }
        };
        let room = budget.bytes.saturating_sub(out.len());
        let result = apply(
            name,
            value,
            &values,
            &Budget {
                bytes: room,
                ..*budget
            },
        );
        match result {
            Ok(v) if v.len() <= room => {
                out.extend_from_slice(&v);
                Ok(())
            }
            Ok(_) | Err(Spent::Bytes) => Err(EvalError::TooLarge { line: line() }),
            Err(Spent::Time) => Err(EvalError::Deadline { line: line() }),
        }
    }
}

/// The operators that supply their own value for an unset variable.
fn is_default_op(name: &str) -> bool {
    matches!(name, "-" | "+" | "=" | "?" | ":-" | ":+" | ":=" | ":?")
}

/// Applies the function an operator names to a value, within `budget` (only replacing can
/// grow a value past it, only patterns and replacing take long).
fn apply(name: &str, s: Vec<u8>, args: &[Vec<u8>], budget: &Budget) -> Result<Vec<u8>, Spent> {
    Ok(match name {
        "," => map_first(s, lower),
        ",," => map_all(&s, lower),
        "^" => map_first(s, upper),
        "^^" => map_all(&s, upper),
        "#" if args.is_empty() => s.len().to_string().into_bytes(),
        "#" => trim_prefix(s, &args[0], false, budget)?,
        "##" => trim_prefix(s, &args[0], true, budget)?,
        "%" => trim_suffix(&s, &args[0], false, budget)?,
        "%%" => trim_suffix(&s, &args[0], true, budget)?,
        ":" => substr(s, args),
        "/#" => match args {
            [old, new] if s.starts_with(old) => replace(&s, old, new, Some(1), budget)?,
            _ => s,
        },
        "/%" => match args {
            [old, new] if s.ends_with(old) => [&s[..s.len() - old.len()], new.as_slice()].concat(),
            _ => s,
        },
        "/" => match args {
            [] => s,
            [old] => replace(&s, old, b"", Some(1), budget)?,
            [old, new, ..] => replace(&s, old, new, Some(1), budget)?,
        },
        "//" => match args {
            [] => s,
            [old] => replace(&s, old, b"", None, budget)?,
            [old, new, ..] => replace(&s, old, new, None, budget)?,
        },
        _ if s.is_empty() && !args.is_empty() => args.concat(),
        _ => s,
    })
}

/// Go's `unicode.ToUpper`: the simple (one character) mapping.
fn upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Go's `unicode.ToLower`: the simple (one character) mapping.
fn lower(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

fn map_all(s: &[u8], f: fn(char) -> char) -> Vec<u8> {
    String::from_utf8_lossy(s)
        .chars()
        .map(f)
        .collect::<String>()
        .into_bytes()
}

fn map_first(s: Vec<u8>, f: fn(char) -> char) -> Vec<u8> {
    if s.is_empty() {
        return s;
    }
    let (r, w) = decode(&s);
    let mut out = f(r).to_string().into_bytes();
    out.extend_from_slice(&s[w..]);
    out
}

/// Go's `strings.Replace(s, old, new, n)` (`None` = all), stopping once the result would be
/// longer than `budget.bytes` (an empty or short `old` with a long `new` multiplies a value).
fn replace(
    s: &[u8],
    old: &[u8],
    new: &[u8],
    n: Option<usize>,
    budget: &Budget,
) -> Result<Vec<u8>, Spent> {
    let limit = n.unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(s.len().min(budget.bytes));
    let push = |out: &mut Vec<u8>, piece: &[u8]| {
        if out.len().saturating_add(piece.len()) > budget.bytes {
            return Err(Spent::Bytes);
        }
        out.extend_from_slice(piece);
        Ok(())
    };
    let mut done = 0;
    let mut i = 0;
    if old.is_empty() {
        // An empty pattern matches before every character and at the end.
        while done < limit {
            push(&mut out, new)?;
            done += 1;
            if i >= s.len() {
                return Ok(out);
            }
            let (_, w) = decode(&s[i..]);
            push(&mut out, &s[i..i + w])?;
            i += w;
        }
        push(&mut out, &s[i..])?;
        return Ok(out);
    }
    let finder = memchr::memmem::Finder::new(old);
    while done < limit {
        match finder.find(&s[i..]) {
            Some(at) => {
                push(&mut out, &s[i..i + at])?;
                push(&mut out, new)?;
                i += at + old.len();
                done += 1;
            }
            None => break,
        }
    }
    push(&mut out, &s[i..])?;
    Ok(out)
}

/// Go's `strconv.Atoi`.
fn atoi(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// `${var:pos}` and `${var:pos:len}`, counting bytes as the original does.
fn substr(s: Vec<u8>, args: &[Vec<u8>]) -> Vec<u8> {
    let Some(pos_arg) = args.first() else {
        return s;
    };
    let Some(mut pos) = atoi(pos_arg) else {
        return s;
    };
    let len = s.len() as i64;
    if pos < 0 {
        pos = (len + pos).max(0);
    }
    let Some(len_arg) = args.get(1) else {
        return if pos < len {
            s[pos as usize..].to_vec()
        } else {
            Vec::new()
        };
    };
    let Some(length) = atoi(len_arg) else {
        return s;
    };
    if length < 0 {
        let end = len + length;
        if end < pos {
            return Vec::new();
        }
        return s[pos as usize..end as usize].to_vec();
    }
    match pos.checked_add(length) {
        Some(end) if end < len => s[pos as usize..end as usize].to_vec(),
        _ if pos < len => s[pos as usize..].to_vec(),
        _ => Vec::new(),
    }
}

/// `${var#p}` (shortest) and `${var##p}` (longest): cut the matching prefix. Each prefix is
/// matched in turn, as the original does (quadratic in the value's length), so the budget's
/// deadline is checked between prefixes.
fn trim_prefix(s: Vec<u8>, pat: &[u8], longest: bool, budget: &Budget) -> Result<Vec<u8>, Spent> {
    let mut cut = None;
    for i in 0..s.len() {
        if budget.late() {
            return Err(Spent::Time);
        }
        let prefix = &s[..s.len() - i];
        match pattern::matches(pat, prefix) {
            Err(_) => return Ok(s),
            Ok(true) => {
                cut = Some(prefix.len());
                if longest {
                    break;
                }
            }
            Ok(false) => {}
        }
    }
    Ok(match cut {
        Some(n) if n > 0 => s[n..].to_vec(),
        _ => s,
    })
}

/// `${var%p}` and `${var%%p}`: as the original, the prefix rule over the reversed value and the
/// reversed pattern (reversed by character).
fn trim_suffix(s: &[u8], pat: &[u8], longest: bool, budget: &Budget) -> Result<Vec<u8>, Spent> {
    let reversed = reverse(s);
    Ok(reverse(&trim_prefix(
        reversed,
        &reverse(pat),
        longest,
        budget,
    )?))
}

fn reverse(s: &[u8]) -> Vec<u8> {
    let mut chars = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let (r, w) = decode(&s[i..]);
        chars.push(r);
        i += w;
    }
    chars.iter().rev().collect::<String>().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn eval(text: &str, vars: &[(&str, &str)]) -> Result<String, EvalError> {
        let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
        let t = parse(text)?;
        let out = t.execute(&|k: &str| vars.get(k).map(|v| v.as_bytes().to_vec()))?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn ok(text: &str, vars: &[(&str, &str)]) -> String {
        eval(text, vars).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn syntax(text: &str) -> &'static str {
        match eval(text, &[("a", "x")]) {
            Err(EvalError::Syntax { why, .. }) => why,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn plain_references_defaults_and_escapes() {
        let v = [("a", "1"), ("e", "")];
        assert_eq!(ok("x ${a} y", &v), "x 1 y");
        assert_eq!(ok("${b:=two}", &v), "two");
        assert_eq!(ok("${b:-two}", &v), "two");
        assert_eq!(ok("${b=two}", &v), "two");
        assert_eq!(ok("${e:=d}", &v), "d");
        assert_eq!(ok("${e=d}", &v), "d", "= also replaces an empty value");
        assert_eq!(ok("${e}", &v), "");
        assert_eq!(ok("${b:=}", &v), "");
        assert_eq!(
            ok("${b:=x${a}y}", &v),
            "x1y",
            "a default may hold a reference"
        );
        assert_eq!(ok("${b:=a b:c}", &v), "a b:c");
        assert_eq!(ok("$${a} $$ $a $5 end$", &v), "${a} $ $a $5 end$");
        assert_eq!(ok("$$$", &v), "$$");
        assert_eq!(ok("${b:+x}", &v), "x", "`:+` is a default too");
    }

    #[test]
    fn missing_variables_are_errors_unless_defaulted() {
        assert_eq!(
            eval("a\nb ${nope}", &[]),
            Err(EvalError::Missing {
                line: 2,
                var: "nope".into()
            })
        );
        assert!(matches!(
            eval("${a:=${nope}}", &[("a", "set")]),
            Err(EvalError::Missing { .. })
        ));
        assert!(matches!(
            eval("${#nope}", &[]),
            Err(EvalError::Missing { .. })
        ));
        assert_eq!(ok("${nope:-}", &[]), "");
        assert!(matches!(eval("${1a}", &[]), Err(EvalError::Missing { .. })));
    }

    #[test]
    fn string_functions() {
        let v = [("s", "Hello World"), ("p", "a/b/c.tar.gz"), ("n", "3")];
        assert_eq!(ok("${s:6}", &v), "World");
        assert_eq!(ok("${s:0:5}", &v), "Hello");
        assert_eq!(ok("${s:-5}", &v), "Hello World", "`:-` is a default");
        assert_eq!(ok("${s:${n}:2}", &v), "lo");
        assert_eq!(ok("${s:1:-1}", &v), "ello Worl");
        assert_eq!(ok("${s:20}", &v), "");
        assert_eq!(ok("${s:x}", &v), "Hello World");
        assert_eq!(ok("${s/o/0}", &v), "Hell0 World");
        assert_eq!(ok("${s//o/0}", &v), "Hell0 W0rld");
        assert_eq!(ok("${s//o/}", &v), "Hell Wrld");
        assert_eq!(ok("${s/#Hello/Bye}", &v), "Bye World");
        assert_eq!(ok("${s/%World/All}", &v), "Hello All");
        assert_eq!(ok("${s/#World/All}", &v), "Hello World");
        assert_eq!(ok("${p//\\//-}", &v), "a-b-c.tar.gz");
        assert_eq!(ok("${p#*/}", &v), "b/c.tar.gz");
        assert_eq!(ok("${p##*/}", &v), "c.tar.gz");
        assert_eq!(ok("${p%.*}", &v), "a/b/c.tar");
        assert_eq!(ok("${p%%.*}", &v), "a/b/c");
        assert_eq!(ok("${s^}", &[("s", "élan")]), "Élan");
        assert_eq!(ok("${s^^}", &v), "HELLO WORLD");
        assert_eq!(ok("${s,}", &v), "hello World");
        assert_eq!(ok("${s,,}", &v), "hello world");
        assert_eq!(ok("${#s}", &v), "11");
        assert_eq!(ok("${#s}", &[("s", "é")]), "2", "bytes");
    }

    #[test]
    fn malformed_references_fail_as_in_flux() {
        assert_eq!(syntax("${}"), BAD_VARIABLE_NAME);
        assert_eq!(syntax("${ a}"), BAD_VARIABLE_NAME);
        assert_eq!(syntax("${a"), MISSING_CLOSING_BRACE);
        assert_eq!(syntax("${a-b}"), MISSING_CLOSING_BRACE);
        assert_eq!(syntax("${a b}"), MISSING_CLOSING_BRACE);
        assert_eq!(syntax("${a//x}"), BAD_SUBSTITUTION);
        assert_eq!(syntax("${a:}"), BAD_FUNCTION_ARGUMENT);
        assert_eq!(syntax("${a#}"), BAD_FUNCTION_ARGUMENT);
        assert_eq!(syntax("${a^^^}"), BAD_SUBSTITUTION);
        assert_eq!(syntax("${a:=x"), BAD_FUNCTION_ARGUMENT);
        assert_eq!(
            eval("ok\n\nbad ${", &[]),
            Err(EvalError::Syntax {
                line: 3,
                why: BAD_VARIABLE_NAME
            })
        );
    }
}
