//! A run's request as its front end was given it (the CLI's flags, the node's fields), checked
//! against its protocol and handed to that protocol's module to become one [`Command`].

use super::protocols::{Command, FieldError, FixedRequest, HttpRequest, LineCommand, Protocol, RespCommand};

/// A run's request as its front end was given it (the CLI's flags, the node's fields), before
/// it is one [`Command`]: [`RequestFields::command`] checks every field against the protocol.
#[derive(Clone, Debug, Default)]
pub struct RequestFields {
    /// Default: `line` against our bench-server, `fixed` against a target.
    pub protocol: Option<Protocol>,
    /// line: `ECHO`, `PING`, `BURN n`, `STREAM n` or `WAIT ms` (default `ECHO`).
    pub command: Option<String>,
    /// line: `ECHO`'s payload size (default 64).
    pub payload_size: Option<usize>,
    /// fixed: the bytes sent; resp: the command's words.
    pub request: Option<String>,
    /// fixed: the exact bytes of a right answer.
    pub response: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `Name: value` each.
    pub headers: Vec<String>,
    pub body: Option<String>,
    pub expect_status: Option<u16>,
    pub expect_body: Option<String>,
    pub keyspace: Option<u64>,
}

/// The fields `protocol` takes, by their names as the node spells them.
fn taken_by(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Line => &["command", "payload_size_bytes"],
        Protocol::Fixed => &["request", "response"],
        Protocol::Http => &["method", "path", "headers", "body", "expect_status", "expect_body"],
        Protocol::Resp => &["request", "keyspace"],
    }
}

impl RequestFields {
    /// Every field but `protocol`, by its name as the node spells it, and whether it is given.
    fn given(&self) -> [(&'static str, bool); 11] {
        [
            ("command", self.command.is_some()),
            ("payload_size_bytes", self.payload_size.is_some()),
            ("request", self.request.is_some()),
            ("response", self.response.is_some()),
            ("method", self.method.is_some()),
            ("path", self.path.is_some()),
            ("headers", !self.headers.is_empty()),
            ("body", self.body.is_some()),
            ("expect_status", self.expect_status.is_some()),
            ("expect_body", self.expect_body.is_some()),
            ("keyspace", self.keyspace.is_some()),
        ]
    }

    /// The one command these fields describe, for a run against a target (`to_target`) or
    /// against our bench-server.
    pub fn command(&self, to_target: bool) -> Result<Command, FieldError> {
        let fail = |field: &'static str, why: String| FieldError { field, why };
        let protocol = self
            .protocol
            .unwrap_or(if to_target { Protocol::Fixed } else { Protocol::Line });
        // Each field belongs to some protocols only: one given to another is a mistake.
        for (field, present) in self.given() {
            let takers: Vec<Protocol> = Protocol::ALL
                .into_iter()
                .filter(|&p| taken_by(p).contains(&field))
                .collect();
            if present && !takers.contains(&protocol) {
                let names: Vec<String> = takers.iter().map(|p| p.to_string()).collect();
                let why = format!("only with protocol {} (this run's is {protocol})", names.join(" or "));
                return Err(fail(field, why));
            }
        }
        if matches!(protocol, Protocol::Http | Protocol::Resp) && !to_target {
            let why = format!("{protocol} needs a target (our bench-server speaks the line protocol)");
            return Err(fail("protocol", why));
        }
        Ok(match protocol {
            Protocol::Line => Command::Line(LineCommand::from_fields(self.command.as_deref(), self.payload_size)?),
            Protocol::Fixed => Command::Fixed(FixedRequest::from_fields(
                self.request.as_deref(),
                self.response.as_deref(),
            )?),
            Protocol::Http => Command::Http(HttpRequest::from_fields(
                self.method.as_deref(),
                self.path.as_deref(),
                &self.headers,
                self.body.as_deref(),
                self.expect_status,
                self.expect_body.as_deref(),
            )?),
            Protocol::Resp => Command::Resp(RespCommand::from_fields(self.request.as_deref(), self.keyspace)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_one_command_or_name_the_field_at_fault() {
        let http = RequestFields {
            protocol: Some(Protocol::Http),
            path: Some("/index.html".into()),
            headers: vec!["Accept: */*".into()],
            expect_status: Some(200),
            ..RequestFields::default()
        };
        let Command::Http(request) = http.command(true).unwrap() else {
            panic!("not HTTP");
        };
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/index.html"));
        assert_eq!(request.headers, [("Accept".to_string(), "*/*".to_string())]);
        let wrong = |fields: RequestFields, to_target: bool| fields.command(to_target).unwrap_err().field;
        assert_eq!(wrong(http.clone(), false), "protocol", "HTTP against bench-server");
        let with = |f: fn(&mut RequestFields)| {
            let mut fields = http.clone();
            f(&mut fields);
            fields
        };
        assert_eq!(wrong(with(|f| f.keyspace = Some(5)), true), "keyspace");
        assert_eq!(wrong(with(|f| f.method = Some("G T".into())), true), "method");
        assert_eq!(wrong(with(|f| f.headers = vec!["nocolon".into()]), true), "headers");
        assert_eq!(wrong(with(|f| f.expect_status = Some(700)), true), "expect_status");
        let fixed = RequestFields {
            request: Some("PING\r\n".into()),
            ..RequestFields::default()
        };
        assert_eq!(wrong(fixed.clone(), true), "response", "fixed needs both");
        let resp = RequestFields {
            protocol: Some(Protocol::Resp),
            request: Some("GET key:__rand_int__".into()),
            keyspace: Some(100),
            ..RequestFields::default()
        };
        assert_eq!(resp.command(true).unwrap().protocol(), Protocol::Resp);
        let line = RequestFields {
            command: Some("PING".into()),
            ..RequestFields::default()
        };
        assert_eq!(line.command(false).unwrap(), Command::Line(LineCommand::Ping));
        assert_eq!(wrong(line, true), "command", "a target's default protocol is fixed");
        let misplaced = RequestFields {
            request: Some("x".into()),
            ..RequestFields::default()
        };
        assert_eq!(
            misplaced.command(false).unwrap_err().to_string(),
            "request: only with protocol fixed or resp (this run's is line)"
        );
    }

    #[test]
    fn every_field_belongs_to_a_protocol() {
        for (field, _) in RequestFields::default().given() {
            assert!(
                Protocol::ALL.into_iter().any(|p| taken_by(p).contains(&field)),
                "{field}"
            );
        }
    }
}
