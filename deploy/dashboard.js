'use strict';
// The operations dashboard's body (serverless.yml OperationsDashboard; docs/operate/runbook.md).
// CloudFormation takes a dashboard as one JSON string: it is written here as data
// and serialised, instead of hand-written JSON inside YAML. What is known only at deploy time
// (the HTTP API's id, the functions' names) goes in through Fn::Join.
//
// Metrics: the app's own counters (mailpixel/logs.py, namespace `mailpixel`: `open_stored`,
// `click_stored`, ...), and AWS's for Lambda, SQS, DynamoDB and API Gateway.

const NAMESPACE = 'mailpixel'; // mailpixel/logs.py METRIC_NAMESPACE

// A reference to a template resource, kept as a marker inside the JSON text until the end.
const ref = (name) => `@@${name}@@`;

function widget(title, metrics, { stat = 'Sum', period = 60, y = 0, x = 0, label } = {}) {
  return {
    type: 'metric',
    x,
    y,
    width: 12,
    height: 6,
    properties: { title, view: 'timeSeries', stat, period, metrics, yAxis: { left: { label, min: 0 } } },
  };
}

// A per-second rate of one of the app's per-minute counters.
function perSecond(metric, label) {
  return [
    [NAMESPACE, metric, { id: metric, visible: false }],
    [{ expression: `${metric}/PERIOD(${metric})`, label, id: `${metric}_per_second` }],
  ];
}

function body(stage, region) {
  const queue = (suffix) => `mailpixel-${stage}-${suffix}`;
  const lambda = (metric, resource, label, stat) => ['AWS/Lambda', metric, 'FunctionName', ref(resource), { label, stat }];
  const depth = (suffix) => ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', queue(suffix), { label: suffix }];
  const widgets = [
    widget('Opens and clicks per second', [...perSecond('open_stored', 'opens/s'), ...perSecond('click_stored', 'clicks/s')], {
      label: 'per second',
    }),
    widget(
      'Enrichment lag (stream iterator age; records expire at 24 h)',
      [
        lambda('IteratorAge', 'EnrichLambdaFunction', 'opens', 'Maximum'),
        lambda('IteratorAge', 'EnrichClicksLambdaFunction', 'clicks', 'Maximum'),
      ],
      { x: 12, stat: 'Maximum', label: 'ms' },
    ),
    widget(
      'Queue depths',
      ['fallback', 'fallback-dlq', 'webhooks', 'webhooks-dlq', 'enrich-failures'].map(depth),
      { y: 6, stat: 'Maximum', period: 300, label: 'messages' },
    ),
    widget(
      'Errors',
      [
        lambda('Errors', 'PixelLambdaFunction', 'pixel', 'Sum'),
        lambda('Errors', 'ApiLambdaFunction', 'api', 'Sum'),
        lambda('Errors', 'EnrichLambdaFunction', 'enrich', 'Sum'),
        lambda('Errors', 'EnrichClicksLambdaFunction', 'enrichClicks', 'Sum'),
        lambda('Errors', 'DrainLambdaFunction', 'drain', 'Sum'),
        lambda('Errors', 'WebhooksLambdaFunction', 'webhooks', 'Sum'),
        ['AWS/ApiGateway', '5xx', 'ApiId', ref('HttpApi'), { label: 'API 5xx' }],
        [NAMESPACE, 'signing_secrets_unavailable', { label: 'signing secrets unloadable' }],
        [NAMESPACE, 'webhook_attempt_failed', { label: 'webhook deliveries failed' }],
      ],
      { x: 12, y: 6, label: 'count' },
    ),
    widget(
      'Throttles',
      [
        lambda('Throttles', 'PixelLambdaFunction', 'pixel (reserved concurrency)', 'Sum'),
        ['AWS/DynamoDB', 'WriteThrottleEvents', 'TableName', `mailpixel-${stage}-events`, { label: 'events table writes' }],
        ['AWS/DynamoDB', 'WriteThrottleEvents', 'TableName', `mailpixel-${stage}-clicks`, { label: 'clicks table writes' }],
        ['AWS/ApiGateway', '4xx', 'ApiId', ref('HttpApi'), { label: 'API 4xx (429s among them)' }],
      ],
      { y: 12, label: 'count' },
    ),
    widget(
      'Fallback: opens kept for later, and their age',
      [
        [NAMESPACE, 'open_fallback', { label: 'opens sent to the fallback' }],
        [NAMESPACE, 'click_fallback', { label: 'clicks sent to the fallback' }],
        ['AWS/SQS', 'ApproximateAgeOfOldestMessage', 'QueueName', queue('fallback'), { label: 'oldest (s)', stat: 'Maximum' }],
      ],
      { x: 12, y: 12, period: 300 },
    ),
  ];
  for (const { properties } of widgets) properties.region = region;
  return JSON.stringify({ widgets });
}

// Serverless variable source: `${file(deploy/dashboard.js)}` in serverless.yml.
module.exports = async ({ resolveVariable }) => {
  const stage = await resolveVariable('sls:stage');
  const region = await resolveVariable('self:provider.region');
  const parts = body(stage, region)
    .split(/@@(\w+)@@/)
    .map((part, index) => (index % 2 === 1 ? { Ref: part } : part));
  return { 'Fn::Join': ['', parts] };
};
