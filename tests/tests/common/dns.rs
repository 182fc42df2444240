//! A DNS server for the tests: the "real" upstream the sandbox's resolver forwards to. It
//! answers A and AAAA queries from a fixed table and remembers every query it was sent.
//!
//! A table entry's answers are addresses of the name asked, `owner=address` for a record of
//! another name (as a careless or hostile server adds), or `cname=target` for a CNAME to
//! `target`, whose own answers follow it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub struct TestDns {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    option: [String; 2],
}

/// The records `table` answers `name` with (following CNAMEs once).
fn records(
    table: &HashMap<String, Vec<String>>,
    name: &str,
    query_type: RecordType,
    depth: u8,
) -> Vec<Record> {
    let mut out = Vec::new();
    for answer in table.get(name).into_iter().flatten() {
        let (owner, value) = answer.split_once('=').unwrap_or((name, answer));
        let owner_name = Name::from_ascii(format!("{owner}.")).expect("name");
        if owner == "cname" {
            let target = Name::from_ascii(format!("{value}.")).expect("target");
            let me = Name::from_ascii(format!("{name}.")).expect("name");
            out.push(Record::from_rdata(
                me,
                300,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(target)),
            ));
            if depth < 4 {
                out.extend(records(table, value, query_type, depth + 1));
            }
            continue;
        }
        let ip: IpAddr = value.parse().expect("address");
        let data = match (ip, query_type) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(v4.into()),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(v6.into()),
            _ => continue,
        };
        out.push(Record::from_rdata(owner_name, 300, data));
    }
    out
}

impl TestDns {
    /// Serves `table` (name -> addresses) on 127.0.0.1 until the test process ends.
    pub fn start(table: &[(&str, &[&str])]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test DNS server");
        let addr = socket.local_addr().expect("its address");
        let table: HashMap<String, Vec<String>> = table
            .iter()
            .map(|(name, answers)| {
                (
                    name.to_string(),
                    answers.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let raw = Arc::new(Mutex::new(Vec::new()));
        let raw_log = Arc::clone(&raw);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((len, client)) = socket.recv_from(&mut buf) {
                raw_log.lock().expect("log").push(buf[..len].to_vec());
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let Some(question) = query.queries.first().cloned() else {
                    continue;
                };
                let name = question.name().to_ascii().trim_end_matches('.').to_string();
                log.lock().expect("log").push(name.clone());
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                reply.metadata.message_type = MessageType::Response;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                reply.queries.push(question.clone());
                if table.contains_key(&name) {
                    reply
                        .answers
                        .extend(records(&table, &name, question.query_type(), 0));
                } else {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, client);
                }
            }
        });
        let option = ["--dns-upstream".to_string(), addr.to_string()];
        TestDns {
            addr,
            asked,
            raw,
            option,
        }
    }

    /// Every name the server was asked, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("log").clone()
    }

    /// Every datagram the server was sent, as sent.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.raw.lock().expect("log").clone()
    }

    /// `--dns-upstream ADDR` for `cordon run`.
    pub fn option(&self) -> Vec<&str> {
        self.option.iter().map(String::as_str).collect()
    }
}
