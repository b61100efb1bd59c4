// A next hop with a parser of its own: Node's HTTP server (llhttp, strict mode), independent of
// the http_parser the proxy uses. Prints one JSON line per event on stdout:
//   {"request": {"method", "url", "hosts", "body" (base64), "trailers"}}  a request it framed
//   {"refused": CODE}                       bytes it could not frame (llhttp's error code)
//   {"mark": N}                             GET /__mark/N, sent by the test past the proxy
// and answers every request 200 with a short body. Usage: node llhttp_upstream.js
'use strict';
const http = require('http');

const server = http.createServer({ insecureHTTPParser: false }, (req, res) => {
  const mark = /^\/__mark\/(\d+)$/.exec(req.url);
  if (mark) {
    process.stdout.write(JSON.stringify({ mark: Number(mark[1]) }) + '\n');
    res.end('marked');
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let hosts = 0;
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i].toLowerCase() === 'host') hosts += 1;
    }
    const request = {
      method: req.method,
      url: req.url,
      hosts,
      body: Buffer.concat(chunks).toString('base64'),
      trailers: req.rawTrailers.length / 2,
    };
    process.stdout.write(JSON.stringify({ request }) + '\n');
    res.setHeader('Content-Type', 'text/plain');
    res.end('ok');
  });
  req.on('error', () => {});
});

server.on('clientError', (error, socket) => {
  // A connection the proxy closed with a request half sent is not a framing disagreement.
  if (error.code !== 'ECONNRESET' && error.code !== 'HPE_INVALID_EOF_STATE') {
    process.stdout.write(JSON.stringify({ refused: error.code || String(error) }) + '\n');
  }
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
});

server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`llhttp-upstream listening on ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
