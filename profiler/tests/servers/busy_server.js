// An HTTP server for tcpprof's tests whose handler, handleRequest, spends its time in
// JavaScript: a loop of arithmetic per request.
// Usage: node --perf-basic-prof busy_server.js PORT
const http = require('http');

function spinArithmetic(n) {
  let a = 0, b = 1;
  for (let i = 0; i < n; i++) {
    const t = (a + b) % 1000003;
    a = b;
    b = t;
  }
  return a;
}

function handleRequest(req, res) {
  const body = String(spinArithmetic(40000)) + '\n';
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
}

http.createServer(handleRequest).listen(Number(process.argv[2]), '127.0.0.1');
