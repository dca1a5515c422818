//! The crate's errors. A definition error names where it is (the step by index and id, or the
//! inputs/trigger table) and the key, because the author has to find and fix it.

use std::fmt;

use cambot_core::StoreError;

pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The definition was refused; every problem found is listed.
    #[error("invalid workflow definition: {0}")]
    Invalid(InvalidDefinition),
    #[error("no workflow named {name:?} in tenant {tenant}")]
    NoSuchWorkflow { tenant: String, name: String },
    #[error("no workflow run {0:?}")]
    NoSuchRun(String),
    #[error("input {name:?} is not an input of workflow {workflow:?} (its inputs: {known})")]
    UnknownInput {
        workflow: String,
        name: String,
        known: String,
    },
    #[error("input {name:?} of workflow {workflow:?} has no default and was not given")]
    MissingInput { workflow: String, name: String },
    #[error("workflow run {0} is already being driven by this process")]
    AlreadyDriving(String),
    /// A stored run that no longer reads back (its definition copy or its inputs).
    #[error("workflow run {run}: {problem}")]
    CorruptRun { run: String, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// All problems of one definition, in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDefinition(pub Vec<DefinitionError>);

impl fmt::Display for InvalidDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where in a definition a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole or a top-level key.
    Top,
    /// `[inputs]` (the input's name, when the problem is one input).
    Inputs(Option<String>),
    Trigger,
    /// `[[steps]]` number `index` (from 0), with its id when it has a valid one.
    Step {
        index: usize,
        id: Option<String>,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Top => f.write_str("definition"),
            Self::Inputs(None) => f.write_str("inputs"),
            Self::Inputs(Some(name)) => write!(f, "inputs.{name}"),
            Self::Trigger => f.write_str("trigger"),
            Self::Step { index, id: None } => write!(f, "steps[{index}]"),
            Self::Step {
                index,
                id: Some(id),
            } => write!(f, "steps[{index}] (id {id:?})"),
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not TOML at all (the parser's message, with line and column).
    Syntax(String),
    UnknownKey,
    MissingKey,
    /// A key that exists but not for this step type.
    NotForType(&'static str),
    /// The value has the wrong TOML type.
    WrongType(&'static str),
    /// The value is out of range or malformed.
    BadValue(String),
    /// The step id was already used by `steps[first]`.
    DuplicateId {
        first: usize,
    },
    UnknownType(String),
    BadGroup(String),
    /// A group that is not a group of the workflow's tenant.
    ForeignGroup(String),
    BadTemplate(String),
    /// `{{ inputs.NAME }}` where NAME is not declared.
    UnknownInput(String),
    /// `{{ steps.ID.output }}` where no step has that id.
    UnknownStep(String),
    /// `{{ steps.ID.output }}` where step ID does not run before this one.
    LaterStep(String),
}

/// One problem of a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub location: Location,
    /// The key at fault, when the problem is one key.
    pub key: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        let key = self.key.as_deref().unwrap_or("?");
        match &self.problem {
            Problem::Syntax(msg) => write!(f, "not valid TOML: {msg}"),
            Problem::UnknownKey => write!(f, "unknown key {key:?}"),
            Problem::MissingKey => write!(f, "missing key {key:?}"),
            Problem::NotForType(kind) => {
                write!(f, "key {key:?} does not apply to a {kind} step")
            }
            Problem::WrongType(expected) => write!(f, "key {key:?}: expected {expected}"),
            Problem::BadValue(msg) => write!(f, "key {key:?}: {msg}"),
            Problem::DuplicateId { first } => {
                write!(
                    f,
                    "key {key:?}: duplicate step id (first used by steps[{first}])"
                )
            }
            Problem::UnknownType(t) => {
                write!(
                    f,
                    "key {key:?}: unknown type {t:?} (use agent, command or send)"
                )
            }
            Problem::BadGroup(msg) => write!(f, "key {key:?}: {msg}"),
            Problem::ForeignGroup(group) => write!(
                f,
                "key {key:?}: {group:?} is not a group of this workflow's tenant"
            ),
            Problem::BadTemplate(msg) => write!(f, "key {key:?}: {msg}"),
            Problem::UnknownInput(name) => write!(
                f,
                "key {key:?}: {{{{ inputs.{name} }}}} names no input declared in [inputs]"
            ),
            Problem::UnknownStep(id) => {
                write!(f, "key {key:?}: {{{{ steps.{id}.output }}}} names no step")
            }
            Problem::LaterStep(id) => write!(
                f,
                "key {key:?}: {{{{ steps.{id}.output }}}} names a step that does not run before this one"
            ),
        }
    }
}
