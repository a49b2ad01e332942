//! A minimal QMP client: one JSON command per line, skipping asynchronous
//! events until the command's own answer arrives.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::LabError;

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    who: &'static str,
}

impl Qmp {
    /// Connects once QEMU has created its socket (it takes a moment to start).
    pub fn connect(socket: &Path, who: &'static str, wait: Duration) -> Result<Self, LabError> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(_) if started.elapsed() < wait => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    return Err(LabError::Qemu(format!(
                        "{who}: no QMP socket at {} after {:.0?}: {e}",
                        socket.display(),
                        wait
                    )))
                }
            }
        };
        // Short: QEMU's monitor stops answering while its migration setup
        // waits on a hung channel, and the caller must stay in control.
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| LabError::Qemu(format!("{who}: {e}")))?;
        let writer = stream
            .try_clone()
            .map_err(|e| LabError::Qemu(format!("{who}: {e}")))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            who,
        };
        // The greeting.
        qmp.read_line()?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_line(&mut self) -> Result<Value, LabError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    LabError::QmpTimeout(self.who)
                }
                _ => LabError::Qemu(format!("{}: reading QMP: {e}", self.who)),
            })?;
        if n == 0 {
            return Err(LabError::Qemu(format!(
                "{}: QEMU closed its QMP socket (exited?)",
                self.who
            )));
        }
        serde_json::from_str(&line)
            .map_err(|e| LabError::Qemu(format!("{}: bad QMP line {line:?}: {e}", self.who)))
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, LabError> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")
            .map_err(|e| LabError::Qemu(format!("{}: writing QMP: {e}", self.who)))?;
        loop {
            let mut answer = self.read_line()?;
            if let Some(value) = answer.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = answer.get("error") {
                return Err(LabError::Qemu(format!(
                    "{}: {command} failed: {}",
                    self.who,
                    error["desc"].as_str().unwrap_or("no description")
                )));
            }
            // An asynchronous event ({"event": ...}) before our answer.
        }
    }
}
