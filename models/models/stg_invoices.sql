-- Invoices since November 2024. amount_usd is already converted to USD; currency is the
-- currency the customer was billed in.
select
    cast(invoice_id as bigint)          as invoice_id,
    cast(account_id as bigint)          as account_id,
    cast(subscription_id as bigint)     as subscription_id,
    cast(issued_at as timestamp)        as issued_at,
    cast(due_at as date)                as due_at,
    cast(paid_at as timestamp)          as paid_at,
    cast(amount_usd as decimal(12, 2))  as amount_usd,
    upper(currency)                     as currency,
    status
from {{ source('app', 'invoices') }}
