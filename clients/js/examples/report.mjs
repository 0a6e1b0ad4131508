// report.mjs: generate a report on a Streamer server and print its progress
// and result.
//
//   node examples/report.mjs ws://127.0.0.1:8080/ws <token> [startDate endDate]
//
// `streamer dev` prints the URL and a token. In Node 20 the client uses the
// `ws` package (an optional peer dependency: npm install ws).
import { StreamerClient, StreamerError } from '@streamer-go/client';

const [url, token, startDate = '2024-01-01', endDate = '2024-01-31'] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node examples/report.mjs <ws-url> <token> [startDate endDate]');
  process.exit(2);
}

const client = new StreamerClient(url, { token });
client.on('reconnecting', (e) => console.error(`reconnecting (attempt ${e.attempt}) in ${e.delayMs} ms`));

try {
  const result = await client.request(
    'generate_report',
    { startDate, endDate },
    { onProgress: (p) => console.log(`${p.percentage}% - ${p.message}`), timeoutMs: 120_000 },
  );
  console.log('result:', JSON.stringify(result));
} catch (err) {
  if (err instanceof StreamerError) console.error(`failed: ${err.code}: ${err.message}`);
  else console.error('failed:', err);
  process.exitCode = 1;
} finally {
  await client.close();
}
