//! A tiny plain-ASCII table renderer for the CLI listings.
//!
//! Output is meant for terminals and for `grep`/`awk` alike: no colours, no box drawing, columns
//! separated by two spaces, numbers right-aligned so their digits line up.

/// How a column's cells are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Rows of text cells under a header line.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

/// Gap between columns.
const COLUMN_GAP: &str = "  ";

impl Table {
    /// A table with these columns; each is (header, alignment).
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            headers: columns.iter().map(|(h, _)| *h).collect(),
            aligns: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Missing trailing cells render empty; extra cells are dropped, so a caller
    /// bug can never shift the other columns.
    pub fn push(&mut self, cells: Vec<String>) {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| sanitize(&c))
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row plus the header and a rule, each ending in '\n'.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        self.line(&mut out, &header, &widths);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        self.line(&mut out, &rule, &widths);
        for row in &self.rows {
            self.line(&mut out, row, &widths);
        }
        out
    }

    fn line(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let mut line = String::new();
        for (i, ((cell, width), align)) in cells.iter().zip(widths).zip(&self.aligns).enumerate() {
            if i > 0 {
                line.push_str(COLUMN_GAP);
            }
            let pad = width.saturating_sub(cell.chars().count());
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
        }
        // Trailing blanks from a padded last column only get in the way of diffs and greps.
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Replaces control characters by '?': client names come from the clients themselves, and an
/// escape sequence in one must not reach the operator's terminal.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut t = Table::new(&[("ID", Align::Right), ("NAME", Align::Left)]);
        t.push(vec!["7".into(), "living room".into()]);
        t.push(vec!["123".into(), "tv".into()]);
        assert_eq!(
            t.render(),
            " ID  NAME\n\
             ---  -----------\n\
             \x20 7  living room\n\
             123  tv\n"
        );
    }

    #[test]
    fn header_wider_than_cells_sets_the_width() {
        let mut t = Table::new(&[("FRAMES SENT", Align::Right), ("X", Align::Left)]);
        t.push(vec!["5".into(), "a".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "FRAMES SENT  X");
        assert_eq!(lines[1], "-----------  -");
        assert_eq!(lines[2], "          5  a");
    }

    #[test]
    fn short_and_long_rows_keep_columns_in_place() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        t.push(vec!["x".into()]);
        t.push(vec!["y".into(), "z".into(), "dropped".into()]);
        assert_eq!(t.render(), "A  B\n-  -\nx\ny  z\n");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut t = Table::new(&[("NAME", Align::Left)]);
        t.push(vec!["evil\x1b[2Jname\n".into()]);
        let out = t.render();
        assert!(!out.contains('\x1b'));
        assert!(out.contains("evil?[2Jname?"));
        assert_eq!(out.lines().count(), 3);
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(&[("N", Align::Left), ("X", Align::Left)]);
        t.push(vec!["été".into(), "1".into()]);
        t.push(vec!["abcd".into(), "2".into()]);
        let out = t.render();
        assert!(out.contains("été   1\n"), "{out}");
    }

    #[test]
    fn empty_table_is_reported_empty() {
        let t = Table::new(&[("A", Align::Left)]);
        assert!(t.is_empty());
    }
}
