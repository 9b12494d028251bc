"""The example shop: products, orders, and Shopify's orders/create webhook."""
