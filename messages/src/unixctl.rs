//! OVS's unixctl protocol, the one `ovs-appctl` speaks: JSON-RPC 1.0
//! objects back to back on a stream. A request is
//! `{"method":"NAME","params":["ARG",...],"id":ID}`; the reply is
//! `{"error":null,"id":ID,"result":"TEXT"}` or, on failure,
//! `{"error":"TEXT","id":ID,"result":null}`.

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub params: Vec<String>,
    /// The id, as JSON text, echoed in the reply.
    pub id: String,
}

/// Finds the first whole JSON object in `buf`: `Ok(None)` if it is not
/// complete yet, else the request and how many bytes it took.
pub fn next_request(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let Some(start) = buf.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(None);
    };
    if buf[start] != b'{' {
        return Err(format!(
            "expected a JSON object, got byte {:#04x}",
            buf[start]
        ));
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, &b) in buf.iter().enumerate().skip(start) {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let text = std::str::from_utf8(&buf[start..=i])
                        .map_err(|_| "the request is not UTF-8".to_string())?;
                    return parse_request(text).map(|r| Some((r, i + 1)));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// A JSON value (only what JSON-RPC requests carry).
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    /// A number, as written.
    Num(String),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.at))
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            self.err(&format!("expected {:?}", c as char))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        match self.s.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Obj(members));
                }
                loop {
                    self.ws();
                    let Value::Str(k) = self.value()? else {
                        return self.err("expected a member name");
                    };
                    self.eat(b':')?;
                    members.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Obj(members));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Arr(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') if self.s[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.s[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Value::Bool(false))
            }
            Some(b'n') if self.s[self.at..].starts_with(b"null") => {
                self.at += 4;
                Ok(Value::Null)
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let start = self.at;
                while self.at < self.s.len()
                    && matches!(
                        self.s[self.at],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.at += 1;
                }
                Ok(Value::Num(
                    String::from_utf8_lossy(&self.s[start..self.at]).into_owned(),
                ))
            }
            _ => self.err("unexpected input"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(&b) = self.s.get(self.at) else {
                return self.err("unterminated string");
            };
            self.at += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return self.err("unterminated escape");
                    };
                    self.at += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.at..self.at + 4)
                                .ok_or("JSON: short \\u escape")?;
                            let code = u32::from_str_radix(&String::from_utf8_lossy(hex), 16)
                                .map_err(|_| "JSON: bad \\u escape".to_string())?;
                            self.at += 4;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(other as char),
                    }
                }
                _ => {
                    // Copy a whole UTF-8 sequence.
                    let start = self.at - 1;
                    let mut end = self.at;
                    while end < self.s.len() && self.s[end] & 0xc0 == 0x80 {
                        end += 1;
                    }
                    out.push_str(&String::from_utf8_lossy(&self.s[start..end]));
                    self.at = end;
                }
            }
        }
    }
}

fn parse_request(text: &str) -> Result<Request, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let Value::Obj(members) = p.value()? else {
        return Err("a request must be a JSON object".into());
    };
    let get = |k: &str| members.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let Some(Value::Str(method)) = get("method") else {
        return Err("request without a \"method\" string".into());
    };
    let params = match get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Arr(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                _ => Err("\"params\" must hold strings".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("\"params\" must be an array".into()),
    };
    let id = match get("id") {
        Some(Value::Num(n)) => n.clone(),
        Some(Value::Str(s)) => quote(s),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "null".into(),
    };
    Ok(Request {
        method: method.clone(),
        params,
        id,
    })
}

/// `s` as a JSON string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The reply to request `id`.
pub fn encode_reply(id: &str, result: &Result<String, String>) -> String {
    match result {
        Ok(text) => format!("{{\"error\":null,\"id\":{id},\"result\":{}}}", quote(text)),
        Err(text) => format!("{{\"error\":{},\"id\":{id},\"result\":null}}", quote(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_and_parse() {
        let two = br#"{"id":0,"method":"ofproto/trace","params":["br0","in_port=1,tcp"]} {"method":"version","params":[],"id":1}"#;
        let (r, n) = next_request(two).unwrap().unwrap();
        assert_eq!(r.method, "ofproto/trace");
        assert_eq!(r.params, vec!["br0", "in_port=1,tcp"]);
        assert_eq!(r.id, "0");
        let (r, _) = next_request(&two[n..]).unwrap().unwrap();
        assert_eq!(r.method, "version");
        assert_eq!(next_request(br#"{"method":"x","#).unwrap(), None);
        assert!(next_request(b"garbage").is_err());
        assert!(next_request(br#"{"method":3}"#).is_err());
        assert!(next_request(br#"{"method":"a","params":"x\"}"}"#).is_err());
    }

    #[test]
    fn replies_quote_text() {
        assert_eq!(
            encode_reply("7", &Ok("a\"b\n".into())),
            r#"{"error":null,"id":7,"result":"a\"b\n"}"#
        );
        assert_eq!(
            encode_reply("7", &Err("no".into())),
            r#"{"error":"no","id":7,"result":null}"#
        );
    }
}
