"""The Faust app of the tutorial (kafka-seed.md, "Stream Processing com Python (Faust)"), as
written there but for one line: the broker URL comes from LEDGE_FAUST_BROKER (default the
tutorial's `kafka://localhost:9092`), so a test can point it at a node on another port.

Run as the tutorial does: `python faust_app.py worker`. Driven by faust_scenarios.py.
"""

import os

import faust

# Faust = Kafka Streams para Python
app = faust.App('myapp', broker=os.environ.get('LEDGE_FAUST_BROKER', 'kafka://localhost:9092'))

class Order(faust.Record):
    order_id: int
    customer_id: int
    amount: float

# Topic
orders_topic = app.topic('orders', value_type=Order)
high_value_topic = app.topic('high-value-orders', value_type=Order)

# Agent (stream processor)
@app.agent(orders_topic)
async def process_orders(orders):
    async for order in orders:
        if order.amount > 1000:
            await high_value_topic.send(value=order)

# Table (aggregation)
order_counts = app.Table('order-counts', default=int)

@app.agent(orders_topic)
async def count_orders(orders):
    async for order in orders.group_by(Order.customer_id):
        order_counts[order.customer_id] += 1

# Run
if __name__ == '__main__':
    app.main()
