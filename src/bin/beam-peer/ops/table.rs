//! Plain-text tables: a header line and aligned columns, numbers to the
//! right. Pure, so the layout is unit-tested.

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    numeric: Vec<usize>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            numeric: Vec::new(),
        }
    }

    /// Columns (by index) aligned to the right.
    pub fn numeric(mut self, cols: &[usize]) -> Table {
        self.numeric = cols.to_vec();
        self
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut width = vec![0usize; n];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let c = r.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                if self.numeric.contains(&i) {
                    line.push_str(&format!("{c:>w$}"));
                } else {
                    line.push_str(&format!("{c:<w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_numbers_go_right() {
        let mut t = Table::new(&["PID", "NAME", "MQ"]).numeric(&[2]);
        t.row(vec!["<0.1.0>".into(), "init".into(), "0".into()]);
        t.row(vec!["<0.80.0>".into(), "".into(), "12".into()]);
        assert_eq!(
            t.render(),
            "PID       NAME  MQ\n<0.1.0>   init   0\n<0.80.0>        12\n"
        );
    }
}
