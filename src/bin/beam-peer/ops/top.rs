//! `top`: a live terminal view of the cluster (ratatui): the nodes with
//! their health, the busiest processes across nodes, refreshed every
//! second. Keys: Tab / Shift-Tab switch node (or all), `s` cycles the sort
//! (reductions, memory, message queue), Up/Down select, `k` kills the
//! selected process after a `y` confirmation, `q` or Esc quits.
//!
//! What it owns: the view's state ([`TopState`]), drawing it ([`render`],
//! pure, tested on ratatui's `TestBackend`), what a key does
//! ([`TopState::key`]), and the terminal: raw mode and the alternate
//! screen, restored on exit, on error and on panic (`ratatui::init`
//! installs the panic hook that restores it).
//!
//! What it must never do: kill without the confirmation, or show an old
//! reading as new: a node that stops answering is shown as such.

use std::time::Duration;

use beam_peer::term::{self, Term};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{duration_text, pid_text, processes_of, ProcRow, Session, SortBy};

/// One node's health as last read.
pub struct NodeHealth {
    pub name: String,
    /// `Err` when it did not answer.
    pub facts: Result<(String, i64, i64, i64), String>,
}

/// Everything the view shows.
pub struct TopState {
    pub nodes: Vec<NodeHealth>,
    pub procs: Vec<ProcRow>,
    /// 0: every node; i: `nodes[i - 1]` only.
    pub view: usize,
    pub sort: SortBy,
    pub selected: usize,
    /// The process `k` asked about, waiting for `y`.
    pub confirm: Option<(String, beam_peer::term::Pid, Option<String>)>,
    pub message: String,
}

/// What a key asks the loop to do.
#[derive(Debug, PartialEq)]
pub enum Action {
    None,
    Quit,
    Kill(String, beam_peer::term::Pid),
}

impl TopState {
    pub fn new() -> TopState {
        TopState {
            nodes: Vec::new(),
            procs: Vec::new(),
            view: 0,
            sort: SortBy::Reductions,
            selected: 0,
            confirm: None,
            message: String::new(),
        }
    }

    /// The processes of the current view, busiest first.
    pub fn rows(&self) -> Vec<&ProcRow> {
        let node = self.view.checked_sub(1).and_then(|i| self.nodes.get(i));
        let mut rows: Vec<&ProcRow> = self
            .procs
            .iter()
            .filter(|r| node.is_none_or(|n| n.name == r.node))
            .collect();
        // Ties in pid order, so the selection stays put across refreshes.
        rows.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.key(self.sort)),
                r.node.clone(),
                r.pid.id,
            )
        });
        rows
    }

    pub fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> Action {
        if let Some((node, pid, _)) = self.confirm.take() {
            if code == KeyCode::Char('y') {
                return Action::Kill(node, pid);
            }
            self.message = "kill cancelled".into();
            return Action::None;
        }
        let views = self.nodes.len() + 1;
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => return Action::Quit,
            KeyCode::Tab => {
                self.view = (self.view + 1) % views;
                self.selected = 0;
            }
            KeyCode::BackTab => {
                self.view = (self.view + views - 1) % views;
                self.selected = 0;
            }
            KeyCode::Char('s') => {
                self.sort = match self.sort {
                    SortBy::Reductions => SortBy::Memory,
                    SortBy::Memory => SortBy::Mq,
                    SortBy::Mq => SortBy::Reductions,
                };
            }
            KeyCode::Down => {
                let n = self.rows().len();
                if self.selected + 1 < n {
                    self.selected += 1;
                }
            }
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Char('k') => {
                let chosen = self
                    .rows()
                    .get(self.selected)
                    .map(|r| (r.node.clone(), r.pid.clone(), r.name.clone()));
                if let Some((node, pid, name)) = chosen {
                    self.message = format!(
                        "kill {} {}on {node}? y to confirm, any other key cancels",
                        pid_text(&pid),
                        name.as_ref().map(|n| format!("({n}) ")).unwrap_or_default()
                    );
                    self.confirm = Some((node, pid, name));
                }
            }
            _ => {}
        }
        Action::None
    }
}

fn sort_name(s: SortBy) -> &'static str {
    match s {
        SortBy::Reductions => "reductions",
        SortBy::Memory => "memory",
        SortBy::Mq => "message queue",
    }
}

/// Draws the whole view.
pub fn render(f: &mut Frame, st: &TopState) {
    let area = f.area();
    let node_lines = st.nodes.len() as u16 + 3;
    let [top, procs, help] = Layout::vertical([
        Constraint::Length(node_lines),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let node_rows: Vec<Row> = st
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let style = if st.view == i + 1 {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            match &n.facts {
                Ok((kind, up, procs, mem)) => Row::new(vec![
                    Cell::from(n.name.clone()),
                    Cell::from("up"),
                    Cell::from(kind.clone()),
                    Cell::from(duration_text(*up)),
                    Cell::from(procs.to_string()),
                    Cell::from(mem.to_string()),
                ]),
                Err(e) => Row::new(vec![
                    Cell::from(n.name.clone()),
                    Cell::from("DOWN"),
                    Cell::from(e.clone()),
                ]),
            }
            .style(style)
        })
        .collect();
    let nodes = Table::new(
        node_rows,
        [
            Constraint::Min(20),
            Constraint::Length(5),
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(12),
        ],
    )
    .header(Row::new(["NODE", "STATE", "KIND", "UPTIME", "PROCESSES", "MEMORY"]).style(bold))
    .block(Block::default().borders(Borders::ALL).title(" nodes "));
    f.render_widget(nodes, top);

    let view = match st.view.checked_sub(1).and_then(|i| st.nodes.get(i)) {
        Some(n) => n.name.clone(),
        None => "all nodes".into(),
    };
    let rows: Vec<Row> = st
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let row = Row::new(vec![
                r.node.clone(),
                pid_text(&r.pid),
                r.name.clone().unwrap_or_default(),
                r.current.clone(),
                r.mq.to_string(),
                r.memory.to_string(),
                r.reductions.to_string(),
            ]);
            if i == st.selected {
                row.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(11),
            Constraint::Length(20),
            Constraint::Min(20),
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(11),
        ],
    )
    .header(
        Row::new([
            "NODE",
            "PID",
            "NAME",
            "FUNCTION",
            "MQ",
            "MEMORY",
            "REDUCTIONS",
        ])
        .style(bold),
    )
    .block(Block::default().borders(Borders::ALL).title(format!(
        " processes: {view}, busiest by {} ",
        sort_name(st.sort)
    )));
    f.render_widget(table, procs);
    let line = if st.message.is_empty() {
        "q quit  Tab/Shift-Tab node  s sort  Up/Down select  k kill".to_string()
    } else {
        st.message.clone()
    };
    f.render_widget(Paragraph::new(Line::from(line)), help);
}

/// Reads every node's health and processes once.
async fn refresh(s: &Session, st: &mut TopState) {
    let cluster = match s.cluster().await {
        Ok(c) => c,
        Err(e) => {
            st.message = format!("{} does not answer: {e:#}", s.target);
            return;
        }
    };
    let mut nodes = Vec::new();
    let mut procs = Vec::new();
    for n in cluster {
        let facts = health(s, &n).await.map_err(|e| format!("{e:#}"));
        if facts.is_ok() {
            if let Ok(rows) = processes_of(s, &n).await {
                procs.extend(rows);
            }
        }
        nodes.push(NodeHealth { name: n, facts });
    }
    st.nodes = nodes;
    st.procs = procs;
    st.view = st.view.min(st.nodes.len());
    st.selected = st.selected.min(st.rows().len().saturating_sub(1));
}

async fn health(s: &Session, node: &str) -> anyhow::Result<(String, i64, i64, i64)> {
    let h = super::health(s, node).await?;
    Ok((h.kind, h.uptime_ms, h.processes, h.memory))
}

/// Runs the view until `q`; the terminal is restored however it ends.
pub async fn run(s: &Session) -> anyhow::Result<()> {
    let mut st = TopState::new();
    st.message = format!("reading {} ...", s.target);
    let mut terminal = ratatui::init();
    let result = run_loop(s, &mut st, &mut terminal).await;
    ratatui::restore();
    result
}

async fn run_loop(
    s: &Session,
    st: &mut TopState,
    terminal: &mut ratatui::DefaultTerminal,
) -> anyhow::Result<()> {
    let (tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    // Key reading blocks: a thread of its own, ending with the channel.
    std::thread::spawn(move || loop {
        match event::poll(Duration::from_millis(200)) {
            Ok(true) => match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    if tx.send((k.code, k.modifiers)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            Ok(false) if tx.is_closed() => return,
            Ok(false) => {}
            Err(_) => return,
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        terminal.draw(|f| render(f, st))?;
        tokio::select! {
            _ = tick.tick() => {
                refresh(s, st).await;
                if st.confirm.is_none() && st.message.starts_with("reading") {
                    st.message.clear();
                }
            }
            k = keys.recv() => {
                let Some((code, mods)) = k else { return Ok(()) };
                match st.key(code, mods) {
                    Action::Quit => return Ok(()),
                    Action::Kill(node, pid) => {
                        let r = s
                            .call(&node, "erlang", "exit", vec![Term::Pid(pid.clone()), term::atom("kill")])
                            .await;
                        st.message = match r {
                            Ok(_) => format!("killed {} on {node}", pid_text(&pid)),
                            Err(e) => format!("kill failed: {e:#}"),
                        };
                        refresh(s, st).await;
                    }
                    Action::None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beam_peer::term::Pid;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn row(node: &str, id: u32, name: Option<&str>, red: i64, mem: i64) -> ProcRow {
        ProcRow {
            node: node.into(),
            pid: Pid::new(node, id, 0, 1),
            name: name.map(str::to_string),
            current: "gen_server:loop/7".into(),
            initial: "proc_lib:init_p/5".into(),
            mq: 0,
            memory: mem,
            reductions: red,
        }
    }

    fn state() -> TopState {
        let mut st = TopState::new();
        st.nodes = vec![
            NodeHealth {
                name: "a@127.0.0.1".into(),
                facts: Ok(("BEAM OTP 25".into(), 65_000, 47, 15_000_000)),
            },
            NodeHealth {
                name: "r@127.0.0.1".into(),
                facts: Ok(("Rust".into(), 3_000, 6, 8_000_000)),
            },
            NodeHealth {
                name: "gone@127.0.0.1".into(),
                facts: Err("no connection".into()),
            },
        ];
        st.procs = vec![
            row("a@127.0.0.1", 50, Some("code_server"), 90_000, 260_000),
            row("r@127.0.0.1", 5, Some("echo"), 12, 512),
            row("a@127.0.0.1", 0, Some("init"), 5_000, 900_000),
        ];
        st
    }

    fn screen(st: &TopState) -> String {
        let mut t = Terminal::new(TestBackend::new(110, 16)).expect("terminal");
        t.draw(|f| render(f, st)).expect("draws");
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_view_shows_nodes_health_and_the_busiest_processes() {
        let st = state();
        let s = screen(&st);
        println!("{s}");
        for want in [
            "a@127.0.0.1",
            "BEAM OTP 25",
            "1m05s",
            "Rust",
            "gone@127.0.0.1",
            "DOWN",
            "processes: all nodes, busiest by reductions",
            "code_server",
            "echo",
        ] {
            assert!(s.contains(want), "{want} in\n{s}");
        }
        let code = s.find("code_server").unwrap_or(usize::MAX);
        let init = s.find(" init ").unwrap_or(0);
        assert!(code < init, "busiest first\n{s}");
    }

    #[test]
    fn keys_switch_node_sort_and_kill_only_after_yes() {
        let mut st = state();
        let none = KeyModifiers::NONE;
        st.key(KeyCode::Char('s'), none);
        assert!(screen(&st).contains("busiest by memory"));
        assert_eq!(st.rows()[0].name.as_deref(), Some("init"));
        st.key(KeyCode::Tab, none);
        st.key(KeyCode::Tab, none);
        let s = screen(&st);
        assert!(s.contains("processes: r@127.0.0.1"), "{s}");
        assert!(!s.contains("code_server"), "{s}");
        assert_eq!(st.key(KeyCode::Char('k'), none), Action::None);
        assert!(screen(&st).contains("y to confirm"));
        assert_eq!(st.key(KeyCode::Char('n'), none), Action::None);
        assert!(st.confirm.is_none());
        st.key(KeyCode::Char('k'), none);
        assert_eq!(
            st.key(KeyCode::Char('y'), none),
            Action::Kill("r@127.0.0.1".into(), Pid::new("r@127.0.0.1", 5, 0, 1))
        );
        st.key(KeyCode::BackTab, none);
        st.key(KeyCode::BackTab, none);
        assert_eq!(st.view, 0);
        assert_eq!(st.key(KeyCode::Char('q'), none), Action::Quit);
    }
}
