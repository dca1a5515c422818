//! The worker's fixed caps (shared/reference/documents.md section 6.2). The host's caps (file
//! size, memory, CPU, wall time, output) are configurable and arrive as arguments.

/// Entries in one archive.
pub const MAX_ZIP_ENTRIES: usize = 10_000;
/// Real (inflated) bytes of one archive member.
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// Real bytes of all members together.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;
/// Members above this size may inflate at most [`MAX_RATIO`] times their compressed size.
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;
/// Benign Office parts stay below 100x; bombs reach about 1000x.
pub const MAX_RATIO: u64 = 200;
/// Element nesting in any XML part.
pub const MAX_XML_DEPTH: usize = 256;
/// Element nesting in HTML (browsers stop at 512; html5ever is quadratic in depth).
pub const MAX_HTML_DEPTH: usize = 512;
/// Non-empty spreadsheet cells read over the whole workbook.
pub const MAX_CELLS: usize = 200_000;
/// Columns rendered per sheet (empty columns are skipped).
pub const MAX_COLUMNS: usize = 64;
/// Slides read from a presentation.
pub const MAX_SLIDES: usize = 2_000;
/// Bytes of a child tool's stderr kept for messages.
pub const MAX_TOOL_STDERR: usize = 4096;
