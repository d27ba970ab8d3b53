// The second independent SDK of the API role's end-to-end tests: node-webot's npm
// `wechat-api` 1.35.1, run with NO AppSecret against the gate. Chosen because it fetches
// its own token: its first call asks `<endpoint>/cgi-bin/token?...&secret=` (here the
// gate's stand-in answer), so the stand-in path is exercised by a client no one here
// wrote. Its API prefix is the `endpoint` property (`setEndpoint` would force https://
// and drop the gate's path). It has no Mini Program calls: `jscode2session` goes through
// its own `request` (urllib) to `<endpoint>/sns/jscode2session`, as a user of it would.
//
//   node bridge.js oa ENDPOINT APPID OPENID MEDIA_FILE OUT_FILE PAGE_URL
//   node bridge.js mini ENDPOINT APPID JS_CODE
//
// stdout: one JSON object of what the SDK got; exit 1 with the SDK's error on stderr.
'use strict';

const fs = require('fs');
const API = require('wechat-api');

/** The SDK's callback-style method `name` of `api`, as a promise of its data. */
function call(api, name, ...args) {
  return new Promise((resolve, reject) => {
    api[name](...args, (err, data) => (err ? reject(err) : resolve(data)));
  });
}

function client(endpoint, appid) {
  const api = new API(appid, '');
  api.endpoint = endpoint;
  return api;
}

async function officialAccount([endpoint, appid, openid, mediaFile, outFile, pageUrl]) {
  const api = client(endpoint, appid);
  const send = await call(api, 'sendText', openid, 'hello from npm wechat-api');
  const user = await call(api, 'getUser', { openid, lang: 'zh_CN' });
  const upload = await call(api, 'uploadMedia', mediaFile, 'image');
  const media = await call(api, 'getMedia', upload.media_id);
  fs.writeFileSync(outFile, media);
  const ticket = await call(api, 'getLatestTicket');
  const config = await call(api, 'getJsConfig', { url: pageUrl, jsApiList: ['scanQRCode'] });
  return {
    token_seen: api.token.accessToken,
    send,
    user,
    upload,
    downloaded: media.length,
    ticket: ticket.ticket,
    config,
  };
}

async function miniProgram([endpoint, appid, jsCode]) {
  const api = client(endpoint, appid);
  const url = `${endpoint}/sns/jscode2session?js_code=${encodeURIComponent(jsCode)}` +
    '&grant_type=authorization_code';
  const session = await new Promise((resolve, reject) => {
    api.request(url, { dataType: 'json' }, (err, data, res) =>
      err ? reject(err) : resolve({ status: res.statusCode, data }));
  });
  return { session };
}

async function main(argv) {
  const [command, ...rest] = argv;
  const commands = { oa: officialAccount, mini: miniProgram };
  if (!commands[command]) {
    throw new Error(`unknown command ${command}`);
  }
  process.stdout.write(JSON.stringify(await commands[command](rest)));
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`wechat-api: ${err.name}: ${err.message}\n`);
  process.exit(1);
});
