-- One row per invoice, with the plan it billed and the account's region.
-- Revenue is recognised when an invoice is paid: paid_amount_usd is the amount for paid
-- invoices and 0 otherwise. An invoice is overdue when it is open past its due date, as of
-- the latest invoice in the data (not the wall clock, so results are reproducible).
with as_of as (
    select cast(max(issued_at) as date) as as_of_date
    from {{ ref('stg_invoices') }}
)

select
    i.invoice_id,
    i.account_id,
    i.subscription_id,
    s.plan,
    a.region,
    i.issued_at,
    cast(i.issued_at as date)   as invoice_date,
    i.due_at,
    i.paid_at,
    i.status,
    i.currency,
    i.amount_usd,
    case
        when i.status = 'paid' then i.amount_usd
        else cast(0 as decimal(12, 2))
    end                         as paid_amount_usd,
    case when i.status = 'paid' then true else false end as is_paid,
    case
        when i.status = 'open' and i.due_at < o.as_of_date then true
        else false
    end                         as is_overdue
from {{ ref('stg_invoices') }} i
cross join as_of o
left join {{ ref('stg_subscriptions') }} s on s.subscription_id = i.subscription_id
left join {{ ref('stg_accounts') }} a on a.account_id = i.account_id
