//! Workflow definitions: the TOML format of the README's "Workflows" section, parsed and
//! checked in one pass that reports every problem with the step and key it is in.

use std::collections::BTreeMap;
use std::time::Duration;

use cambot_protocol::GroupFolder;
use toml::Value;

use crate::error::DefinitionError;
use crate::error::InvalidDefinition;
use crate::error::Location;
use crate::error::Problem;
use crate::template::Reference;
use crate::template::Template;

/// A step's time limit when it names none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Retries after a failed (or interrupted) attempt when a step names none: 3 attempts in all.
pub const DEFAULT_RETRIES: u32 = 2;
const MAX_TIMEOUT_SECS: i64 = 24 * 60 * 60;
const MAX_RETRIES: i64 = 10;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// An agent run of the group; `prompt` is its message.
    Agent,
    /// `sh -c command` under the group's sandbox plan; the output is its stdout.
    Command,
    /// Posts `text` to the group's chat through the outbox.
    Send,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Command => "command",
            Self::Send => "send",
        }
    }

    /// The key holding the step's template.
    pub fn body_key(self) -> &'static str {
        match self {
            Self::Agent => "prompt",
            Self::Command => "command",
            Self::Send => "text",
        }
    }
}

/// Which transcript an agent step continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    /// A fresh session per workflow run (the default).
    #[default]
    Run,
    /// The group's own chat session (`session = "group"`).
    Group,
}

/// One step of a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    pub group: GroupFolder,
    /// `prompt`, `command` or `text`, by kind.
    pub body: Template,
    pub timeout: Duration,
    pub retries: u32,
    pub session: SessionMode,
}

/// A checked workflow definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    /// Declared inputs and their defaults (`None`: the input must be given).
    pub inputs: BTreeMap<String, Option<String>>,
    /// `[trigger] schedule`, as written (its syntax is checked by the scheduler's parser, which
    /// the binary hands to the engine).
    pub schedule: Option<String>,
    pub steps: Vec<Step>,
    /// The TOML it was parsed from.
    pub toml: String,
}

/// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`: workflow names, input names and step ids.
pub(crate) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

const NAME_RULE: &str = "use 1-64 characters from A-Z a-z 0-9 _ -, starting with a letter or digit";
const TOP_KEYS: &[&str] = &["name", "inputs", "trigger", "steps"];
const STEP_KEYS: &[&str] = &[
    "id",
    "type",
    "group",
    "prompt",
    "command",
    "text",
    "timeout_secs",
    "retries",
    "session",
];

impl Definition {
    /// Parses and checks a definition. Groups are checked only for their form here; whether
    /// they belong to the tenant is the engine's check on add.
    pub fn parse(toml_text: &str) -> Result<Self, InvalidDefinition> {
        let mut p = Parser::default();
        let table: toml::Table = match toml_text.parse() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string().trim_end().replace('\n', " | ");
                p.push(Location::Top, None, Problem::Syntax(msg));
                return Err(InvalidDefinition(p.errors));
            }
        };
        let def = p.definition(&table, toml_text);
        match def {
            Some(def) if p.errors.is_empty() => Ok(def),
            _ => Err(InvalidDefinition(p.errors)),
        }
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The distinct groups its steps name.
    pub fn groups(&self) -> Vec<GroupFolder> {
        let mut groups: Vec<GroupFolder> = Vec::new();
        for s in &self.steps {
            if !groups.contains(&s.group) {
                groups.push(s.group.clone());
            }
        }
        groups
    }
}

#[derive(Default)]
struct Parser {
    errors: Vec<DefinitionError>,
}

impl Parser {
    fn push(&mut self, location: Location, key: Option<&str>, problem: Problem) {
        self.errors.push(DefinitionError {
            location,
            key: key.map(str::to_owned),
            problem,
        });
    }

    fn unknown_keys(&mut self, table: &toml::Table, known: &[&str], at: &Location) {
        for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
            self.push(at.clone(), Some(key), Problem::UnknownKey);
        }
    }

    /// A string key; a missing one is reported only when `required`.
    fn string<'a>(
        &mut self,
        table: &'a toml::Table,
        key: &str,
        at: &Location,
        required: bool,
    ) -> Option<&'a str> {
        match table.get(key) {
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.push(at.clone(), Some(key), Problem::WrongType("a string"));
                None
            }
            None => {
                if required {
                    self.push(at.clone(), Some(key), Problem::MissingKey);
                }
                None
            }
        }
    }

    fn integer(
        &mut self,
        table: &toml::Table,
        key: &str,
        at: &Location,
        range: (i64, i64),
    ) -> Option<i64> {
        match table.get(key)? {
            Value::Integer(n) if (range.0..=range.1).contains(n) => Some(*n),
            Value::Integer(n) => {
                let msg = format!("{n} is out of range ({}..={})", range.0, range.1);
                self.push(at.clone(), Some(key), Problem::BadValue(msg));
                None
            }
            _ => {
                self.push(at.clone(), Some(key), Problem::WrongType("an integer"));
                None
            }
        }
    }

    fn definition(&mut self, table: &toml::Table, text: &str) -> Option<Definition> {
        let top = Location::Top;
        self.unknown_keys(table, TOP_KEYS, &top);
        let name = self.string(table, "name", &top, true);
        if let Some(n) = name.filter(|n| !is_name(n)) {
            let msg = format!("workflow name {n:?} is invalid: {NAME_RULE}");
            self.push(top.clone(), Some("name"), Problem::BadValue(msg));
        }
        let inputs = self.inputs(table.get("inputs"));
        let schedule = self.trigger(table.get("trigger"));
        let steps = self.steps(table.get("steps"), &inputs);
        Some(Definition {
            name: name?.to_owned(),
            inputs,
            schedule,
            steps: steps?,
            toml: text.to_owned(),
        })
    }

    fn inputs(&mut self, value: Option<&Value>) -> BTreeMap<String, Option<String>> {
        let mut inputs = BTreeMap::new();
        let Some(value) = value else {
            return inputs;
        };
        let Value::Table(table) = value else {
            let at = Location::Top;
            self.push(at, Some("inputs"), Problem::WrongType("a table"));
            return inputs;
        };
        for (name, spec) in table {
            let at = Location::Inputs(Some(name.clone()));
            if !is_name(name) {
                let msg = format!("input name {name:?} is invalid: {NAME_RULE}");
                self.push(Location::Inputs(None), Some(name), Problem::BadValue(msg));
                continue;
            }
            let Value::Table(spec) = spec else {
                let expected = "a table such as { default = \"...\" }";
                self.push(
                    Location::Inputs(None),
                    Some(name),
                    Problem::WrongType(expected),
                );
                continue;
            };
            self.unknown_keys(spec, &["default"], &at);
            let default = self.string(spec, "default", &at, false).map(str::to_owned);
            inputs.insert(name.clone(), default);
        }
        inputs
    }

    fn trigger(&mut self, value: Option<&Value>) -> Option<String> {
        let value = value?;
        let Value::Table(table) = value else {
            self.push(
                Location::Top,
                Some("trigger"),
                Problem::WrongType("a table"),
            );
            return None;
        };
        let at = Location::Trigger;
        self.unknown_keys(table, &["schedule"], &at);
        let schedule = self.string(table, "schedule", &at, true)?;
        if schedule.trim().is_empty() {
            let msg = "must not be empty".to_owned();
            self.push(at, Some("schedule"), Problem::BadValue(msg));
            return None;
        }
        Some(schedule.to_owned())
    }

    fn steps(
        &mut self,
        value: Option<&Value>,
        inputs: &BTreeMap<String, Option<String>>,
    ) -> Option<Vec<Step>> {
        let top = Location::Top;
        let list = match value {
            None => {
                self.push(top, Some("steps"), Problem::MissingKey);
                return None;
            }
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(Value::Array(_)) => {
                let msg = "a workflow needs at least one step".to_owned();
                self.push(top, Some("steps"), Problem::BadValue(msg));
                return None;
            }
            Some(_) => {
                self.push(top, Some("steps"), Problem::WrongType("[[steps]] tables"));
                return None;
            }
        };
        // Every id first, so a reference to a later step reads as "not earlier", not "unknown".
        let ids: Vec<Option<&str>> = list
            .iter()
            .map(|v| v.as_table().and_then(|t| t.get("id")?.as_str()))
            .collect();
        let mut steps = Vec::new();
        let mut complete = true;
        for (index, value) in list.iter().enumerate() {
            match self.step(index, value, &ids, inputs) {
                Some(step) => steps.push(step),
                None => complete = false,
            }
        }
        complete.then_some(steps)
    }

    fn step(
        &mut self,
        index: usize,
        value: &Value,
        ids: &[Option<&str>],
        inputs: &BTreeMap<String, Option<String>>,
    ) -> Option<Step> {
        let Value::Table(table) = value else {
            let at = Location::Step { index, id: None };
            self.push(at, None, Problem::WrongType("a [[steps]] table"));
            return None;
        };
        let valid_id = table
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_name(id));
        let at = Location::Step {
            index,
            id: valid_id.map(str::to_owned),
        };
        let errors_before = self.errors.len();
        self.unknown_keys(table, STEP_KEYS, &at);
        let id = self.string(table, "id", &at, true);
        if let Some(id) = id {
            if !is_name(id) {
                let msg = format!("step id {id:?} is invalid: {NAME_RULE}");
                self.push(at.clone(), Some("id"), Problem::BadValue(msg));
            } else if let Some(first) = ids[..index].iter().position(|i| *i == Some(id)) {
                self.push(at.clone(), Some("id"), Problem::DuplicateId { first });
            }
        }
        let kind = match self.string(table, "type", &at, true) {
            Some("agent") => Some(StepKind::Agent),
            Some("command") => Some(StepKind::Command),
            Some("send") => Some(StepKind::Send),
            Some(other) => {
                self.push(
                    at.clone(),
                    Some("type"),
                    Problem::UnknownType(other.to_owned()),
                );
                None
            }
            None => None,
        };
        let group = self.string(table, "group", &at, true).and_then(|g| {
            GroupFolder::new(g)
                .map_err(|e| self.push(at.clone(), Some("group"), Problem::BadGroup(e.to_string())))
                .ok()
        });
        let timeout = self
            .integer(table, "timeout_secs", &at, (1, MAX_TIMEOUT_SECS))
            .map_or(DEFAULT_TIMEOUT_SECS, |n| n.unsigned_abs());
        let retries = self
            .integer(table, "retries", &at, (0, MAX_RETRIES))
            .map_or(DEFAULT_RETRIES, |n| {
                u32::try_from(n).unwrap_or(DEFAULT_RETRIES)
            });
        let session = match self.string(table, "session", &at, false) {
            None | Some("run") => SessionMode::Run,
            Some("group") => SessionMode::Group,
            Some(other) => {
                let msg = format!("unknown session {other:?} (use \"group\", or leave it out)");
                self.push(at.clone(), Some("session"), Problem::BadValue(msg));
                SessionMode::Run
            }
        };
        let body = kind.and_then(|kind| self.body(table, kind, index, &at, ids, inputs));
        let step = Step {
            id: id?.to_owned(),
            kind: kind?,
            group: group?,
            body: body?,
            timeout: Duration::from_secs(timeout),
            retries,
            session,
        };
        (self.errors.len() == errors_before).then_some(step)
    }

    /// The kind's template key: present, the other kinds' keys absent, references resolvable.
    fn body(
        &mut self,
        table: &toml::Table,
        kind: StepKind,
        index: usize,
        at: &Location,
        ids: &[Option<&str>],
        inputs: &BTreeMap<String, Option<String>>,
    ) -> Option<Template> {
        for other in [StepKind::Agent, StepKind::Command, StepKind::Send] {
            if other != kind && table.contains_key(other.body_key()) {
                let key = Some(other.body_key());
                self.push(at.clone(), key, Problem::NotForType(kind.as_str()));
            }
        }
        if kind != StepKind::Agent && table.contains_key("session") {
            self.push(
                at.clone(),
                Some("session"),
                Problem::NotForType(kind.as_str()),
            );
        }
        let key = kind.body_key();
        let text = self.string(table, key, at, true)?;
        let parsed = match kind {
            StepKind::Command => Template::parse_command(text),
            StepKind::Agent | StepKind::Send => Template::parse(text),
        };
        let template = match parsed {
            Ok(t) => t,
            Err(e) => {
                self.push(at.clone(), Some(key), Problem::BadTemplate(e.to_string()));
                return None;
            }
        };
        let before = self.errors.len();
        for r in template.references() {
            let problem = match r {
                Reference::Input(name) if !inputs.contains_key(name) => {
                    Problem::UnknownInput(name.clone())
                }
                Reference::StepOutput(id) => match ids.iter().position(|i| *i == Some(id)) {
                    None => Problem::UnknownStep(id.clone()),
                    Some(i) if i >= index => Problem::LaterStep(id.clone()),
                    Some(_) => continue,
                },
                Reference::Input(_) => continue,
            };
            self.push(at.clone(), Some(key), problem);
        }
        (self.errors.len() == before).then_some(template)
    }
}
