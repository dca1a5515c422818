//! Folding a stream of [`StreamEvent`]s into the final [`AssistantMessage`].

use std::collections::HashMap;

use futures::StreamExt;

use crate::error::ProviderError;
use crate::provider::EventStream;
use crate::types::AssistantMessage;
use crate::types::ContentBlock;
use crate::types::Message;
use crate::types::Role;
use crate::types::StopReason;
use crate::types::StreamEvent;
use crate::types::ToolUse;
use crate::types::Usage;

/// Builds the assistant message while the caller also forwards deltas elsewhere (the runner
/// streams text to the host and keeps the message for the transcript).
#[derive(Debug, Default)]
pub struct MessageCollector {
    id: Option<String>,
    model: Option<String>,
    blocks: Vec<ContentBlock>,
    /// Index in `blocks` of the text block being appended to, if the last block is text.
    open_text: Option<usize>,
    open_thinking: Option<usize>,
    /// Tool calls in progress: id → index in `blocks`.
    open_tools: HashMap<String, usize>,
    usage: Usage,
    stop: Option<(StopReason, Option<String>)>,
}

impl MessageCollector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event.
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::MessageStart { id, model } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            StreamEvent::TextDelta { text } => {
                self.open_thinking = None;
                match self.open_text.and_then(|i| self.blocks.get_mut(i)) {
                    Some(ContentBlock::Text { text: t }) => t.push_str(text),
                    _ => {
                        self.open_text = Some(self.blocks.len());
                        self.blocks.push(ContentBlock::text(text.clone()));
                    }
                }
            }
            StreamEvent::ThinkingDelta { thinking } => {
                self.open_text = None;
                match self.open_thinking.and_then(|i| self.blocks.get_mut(i)) {
                    Some(ContentBlock::Thinking { thinking: t, .. }) => t.push_str(thinking),
                    _ => {
                        self.open_thinking = Some(self.blocks.len());
                        self.blocks.push(ContentBlock::Thinking {
                            thinking: thinking.clone(),
                            signature: None,
                        });
                    }
                }
            }
            StreamEvent::ThinkingEnd { signature } => {
                let i = match self.open_thinking.take() {
                    Some(i) => i,
                    None => {
                        // A thinking block with no text at all.
                        self.blocks.push(ContentBlock::Thinking {
                            thinking: String::new(),
                            signature: None,
                        });
                        self.blocks.len() - 1
                    }
                };
                if let Some(ContentBlock::Thinking { signature: s, .. }) = self.blocks.get_mut(i) {
                    s.clone_from(signature);
                }
            }
            StreamEvent::RedactedThinking { data } => {
                self.open_text = None;
                self.open_thinking = None;
                self.blocks
                    .push(ContentBlock::RedactedThinking { data: data.clone() });
            }
            StreamEvent::ToolCallStart { id, name } => {
                self.open_text = None;
                self.open_thinking = None;
                self.open_tools.insert(id.clone(), self.blocks.len());
                self.blocks.push(ContentBlock::ToolUse(ToolUse {
                    id: id.clone(),
                    name: name.clone(),
                    input: serde_json::Value::Object(Default::default()),
                    invalid_input: None,
                }));
            }
            StreamEvent::ToolArgsDelta { .. } => {}
            StreamEvent::ToolCallEnd {
                id,
                input,
                invalid_input,
            } => {
                if let Some(i) = self.open_tools.remove(id)
                    && let Some(ContentBlock::ToolUse(t)) = self.blocks.get_mut(i)
                {
                    t.input = input.clone();
                    t.invalid_input.clone_from(invalid_input);
                }
            }
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Stop {
                reason,
                stop_sequence,
            } => self.stop = Some((reason.clone(), stop_sequence.clone())),
        }
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The finished message; `Err(IncompleteStream)` if no `Stop` was seen.
    pub fn finish(self) -> Result<AssistantMessage, ProviderError> {
        let Some((stop_reason, stop_sequence)) = self.stop else {
            return Err(ProviderError::IncompleteStream);
        };
        Ok(AssistantMessage {
            id: self.id,
            model: self.model,
            message: Message {
                role: Role::Assistant,
                content: self.blocks,
            },
            stop_reason,
            stop_sequence,
            usage: self.usage,
        })
    }
}

/// Drains a stream into the final message; the first error ends it.
pub async fn collect(mut stream: EventStream) -> Result<AssistantMessage, ProviderError> {
    let mut c = MessageCollector::new();
    while let Some(event) = stream.next().await {
        c.push(&event?);
    }
    c.finish()
}
