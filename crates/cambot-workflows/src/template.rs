//! `{{ inputs.<name> }}` and `{{ steps.<id>.output }}`: the only two references a template may
//! hold. Nothing is evaluated. In a `command` every substituted value becomes one single-quoted
//! shell word, and a reference is refused where quoting would not hold (inside quotes, a
//! comment, backticks, a here-document, after `\` or `$`).

use std::collections::BTreeMap;

/// What a `{{ }}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `{{ inputs.<name> }}`
    Input(String),
    /// `{{ steps.<id>.output }}`
    StepOutput(String),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(name) => write!(f, "{{{{ inputs.{name} }}}}"),
            Self::StepOutput(id) => write!(f, "{{{{ steps.{id}.output }}}}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Ref(Reference),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Why a template (or a rendering of it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("\"{{{{\" at byte {at} is not closed by \"}}}}\"")]
    Unclosed { at: usize },
    #[error(
        "\"{{{{ {text} }}}}\" is not a reference (use {{{{ inputs.NAME }}}} or {{{{ steps.ID.output }}}})"
    )]
    BadReference { text: String },
    #[error(
        "{reference} is {context}, where shell quoting would not hold; write it as a word of its own (it is quoted for you)"
    )]
    UnsafeInCommand {
        reference: Reference,
        context: &'static str,
    },
    #[error("{reference} has no value")]
    Missing { reference: Reference },
    #[error("the value of {reference} contains a NUL byte, which no shell word can hold")]
    NulByte { reference: Reference },
}

/// Values a template is rendered with: the run's inputs and the outputs of finished steps.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub inputs: &'a BTreeMap<String, String>,
    pub outputs: &'a BTreeMap<String, String>,
}

impl Template {
    /// Parses `text`. References are only recognised, not checked against a definition.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed { at: offset + open })?;
            if open > 0 {
                segments.push(Segment::Text(rest[..open].to_owned()));
            }
            segments.push(Segment::Ref(reference(after[..close].trim())?));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_owned()));
        }
        Ok(Self { segments })
    }

    /// Parses a `command` line: as [`Template::parse`], and refuses a reference in a place
    /// where a single-quoted word would not stay one word.
    pub fn parse_command(text: &str) -> Result<Self, TemplateError> {
        let template = Self::parse(text)?;
        let mut lexer = ShellLexer::default();
        for segment in &template.segments {
            match segment {
                Segment::Text(t) => t.chars().for_each(|c| lexer.feed(c)),
                Segment::Ref(r) => {
                    if let Some(context) = lexer.unsafe_context() {
                        return Err(TemplateError::UnsafeInCommand {
                            reference: r.clone(),
                            context,
                        });
                    }
                    // The quoted word stands where the reference was.
                    lexer.feed('x');
                }
            }
        }
        Ok(template)
    }

    /// Every reference, in order.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Ref(r) => Some(r),
            Segment::Text(_) => None,
        })
    }

    /// The text with each reference replaced by its value verbatim (prompts, messages).
    pub fn render(&self, values: Values<'_>) -> Result<String, TemplateError> {
        self.render_with(values, |_, v| Ok(v.to_owned()))
    }

    /// The text with each reference replaced by its value as one single-quoted shell word.
    pub fn render_command(&self, values: Values<'_>) -> Result<String, TemplateError> {
        self.render_with(values, |r, v| {
            if v.contains('\0') {
                return Err(TemplateError::NulByte {
                    reference: r.clone(),
                });
            }
            Ok(shell_quote(v))
        })
    }

    fn render_with(
        &self,
        values: Values<'_>,
        substitute: impl Fn(&Reference, &str) -> Result<String, TemplateError>,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Ref(r) => {
                    let value = match r {
                        Reference::Input(name) => values.inputs.get(name),
                        Reference::StepOutput(id) => values.outputs.get(id),
                    };
                    let value = value.ok_or_else(|| TemplateError::Missing {
                        reference: r.clone(),
                    })?;
                    out.push_str(&substitute(r, value)?);
                }
            }
        }
        Ok(out)
    }
}

fn reference(inner: &str) -> Result<Reference, TemplateError> {
    let bad = || TemplateError::BadReference {
        text: inner.to_owned(),
    };
    let parts: Vec<&str> = inner.split('.').collect();
    match parts.as_slice() {
        ["inputs", name] if crate::definition::is_name(name) => {
            Ok(Reference::Input((*name).to_owned()))
        }
        ["steps", id, "output"] if crate::definition::is_name(id) => {
            Ok(Reference::StepOutput((*id).to_owned()))
        }
        _ => Err(bad()),
    }
}

/// `value` as one POSIX shell word: single quotes, each `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Single,
    Double,
    Backtick,
    Comment,
}

/// Just enough of the POSIX shell grammar to know whether a word may start here unquoted.
#[derive(Debug, Default)]
struct ShellLexer {
    stack: Vec<Quote>,
    escaped: bool,
    prev: Option<char>,
    heredoc: bool,
}

impl ShellLexer {
    fn feed(&mut self, c: char) {
        let escaped = std::mem::take(&mut self.escaped);
        let top = self.stack.last().copied();
        match top {
            _ if escaped => {}
            Some(Quote::Single) => {
                if c == '\'' {
                    self.stack.pop();
                }
            }
            Some(Quote::Comment) => {
                if c == '\n' {
                    self.stack.pop();
                }
            }
            Some(Quote::Double) => match c {
                '\\' => self.escaped = true,
                '"' => drop(self.stack.pop()),
                '`' => self.stack.push(Quote::Backtick),
                _ => {}
            },
            Some(Quote::Backtick) | None => match c {
                '\\' => self.escaped = true,
                '\'' => self.stack.push(Quote::Single),
                '"' => self.stack.push(Quote::Double),
                '`' if top == Some(Quote::Backtick) => drop(self.stack.pop()),
                '`' => self.stack.push(Quote::Backtick),
                '#' if top.is_none() && self.at_word_start() => self.stack.push(Quote::Comment),
                '<' if top.is_none() && self.prev == Some('<') => self.heredoc = true,
                _ => {}
            },
        }
        self.prev = Some(c);
    }

    fn at_word_start(&self) -> bool {
        self.prev
            .is_none_or(|p| p.is_whitespace() || ";&|()<>".contains(p))
    }

    /// Why a word may not start here, if it may not.
    fn unsafe_context(&self) -> Option<&'static str> {
        match self.stack.last() {
            Some(Quote::Single) => Some("inside single quotes"),
            Some(Quote::Double) => Some("inside double quotes"),
            Some(Quote::Backtick) => Some("inside backticks"),
            Some(Quote::Comment) => Some("inside a comment"),
            None if self.escaped => Some("after a backslash"),
            None if self.prev == Some('$') => Some("right after \"$\""),
            None if self.heredoc => Some("in a command with a here-document"),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_wraps_and_escapes_single_quotes() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn references_are_recognised_with_or_without_spaces() {
        let t = Template::parse("a {{inputs.x}} b {{  steps.s-1.output  }} c")
            .unwrap_or_else(|e| panic!("{e}"));
        let refs: Vec<_> = t.references().cloned().collect();
        assert_eq!(
            refs,
            [
                Reference::Input("x".into()),
                Reference::StepOutput("s-1".into())
            ]
        );
    }
}
