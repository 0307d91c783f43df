-- One row per account with its health signals and a 0-100 health score. This is what the
-- syncs deliver to the CRM and to the webhook.
--
-- "Now" is the latest ticket in the data, not the wall clock, so the example gives the same
-- answer on every machine. The score adds up:
--   subscription  active 30, trialing 20, past_due 5, canceled 0
--   adoption      active users in the last 30 days: 5+ -> 25, 2-4 -> 15, 1 -> 8, 0 -> 0
--   support load  open tickets: 0 -> 20, 1-2 -> 10, 3+ -> 0
--   satisfaction  average CSAT: none -> 8, >= 4 -> 15, >= 3 -> 8, lower -> 0
--   billing       no overdue invoice -> 10
with as_of as (
    select max(created_at) as as_of_at
    from {{ ref('stg_support_tickets') }}
),

mrr as (
    select account_id, sum(active_mrr_usd) as mrr
    from {{ ref('stg_subscriptions') }}
    group by account_id
),

billing as (
    select
        account_id,
        sum(paid_amount_usd)                            as lifetime_value,
        sum(case when is_overdue then 1 else 0 end)     as overdue_invoices,
        max(paid_at)                                    as last_paid_at
    from {{ ref('fct_invoices') }}
    group by account_id
),

support as (
    select
        t.account_id,
        sum(case when t.is_open then 1 else 0 end)      as open_tickets,
        sum(case
                when t.created_at >= o.as_of_at - interval '90 days' then 1
                else 0
            end)                                        as last_90d_tickets,
        avg(t.csat)                                     as avg_csat
    from {{ ref('stg_support_tickets') }} t
    cross join as_of o
    group by t.account_id
),

activity as (
    select
        u.account_id,
        sum(case
                when u.last_seen_at >= o.as_of_at - interval '30 days' then 1
                else 0
            end)                                        as active_users
    from {{ ref('stg_users') }} u
    cross join as_of o
    group by u.account_id
),

signals as (
    select
        d.account_id,
        d.name,
        d.domain,
        d.region,
        d.segment,
        d.plan,
        d.subscription_status,
        d.user_count,
        cast(coalesce(m.mrr, 0) as decimal(12, 2))              as mrr,
        cast(coalesce(b.lifetime_value, 0) as decimal(14, 2))   as lifetime_value,
        cast(coalesce(b.overdue_invoices, 0) as bigint)         as overdue_invoices,
        b.last_paid_at,
        cast(coalesce(s.open_tickets, 0) as bigint)             as open_tickets,
        cast(coalesce(s.last_90d_tickets, 0) as bigint)         as last_90d_tickets,
        cast(round(s.avg_csat, 2) as decimal(3, 2))             as avg_csat,
        cast(coalesce(a.active_users, 0) as bigint)             as active_users
    from {{ ref('dim_accounts') }} d
    left join mrr m on m.account_id = d.account_id
    left join billing b on b.account_id = d.account_id
    left join support s on s.account_id = d.account_id
    left join activity a on a.account_id = d.account_id
),

scored as (
    select
        signals.*,
        cast(
            case subscription_status
                when 'active' then 30
                when 'trialing' then 20
                when 'past_due' then 5
                else 0
            end
            + case
                when active_users >= 5 then 25
                when active_users >= 2 then 15
                when active_users = 1 then 8
                else 0
            end
            + case
                when open_tickets = 0 then 20
                when open_tickets <= 2 then 10
                else 0
            end
            + case
                when avg_csat is null then 8
                when avg_csat >= 4 then 15
                when avg_csat >= 3 then 8
                else 0
            end
            + case when overdue_invoices = 0 then 10 else 0 end
        as integer)                                             as health_score
    from signals
)

select
    account_id,
    name,
    domain,
    region,
    segment,
    plan,
    subscription_status,
    mrr,
    lifetime_value,
    last_paid_at,
    overdue_invoices,
    open_tickets,
    last_90d_tickets,
    avg_csat,
    user_count,
    active_users,
    health_score,
    case
        when health_score >= 70 then 'healthy'
        when health_score >= 40 then 'at_risk'
        else 'critical'
    end                                                         as health_band
from scored
