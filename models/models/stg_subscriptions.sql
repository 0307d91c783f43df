-- Subscriptions (plan periods). A plan change cancels one row and starts the next, so an
-- account has one current row: the latest by started_at.
-- active_mrr_usd counts only subscriptions that are billed now (active or past_due);
-- trials and canceled subscriptions count 0.
select
    cast(subscription_id as bigint)     as subscription_id,
    cast(account_id as bigint)          as account_id,
    plan,
    status,
    cast(mrr_usd as decimal(12, 2))     as mrr_usd,
    case
        when status in ('active', 'past_due') then cast(mrr_usd as decimal(12, 2))
        else cast(0 as decimal(12, 2))
    end                                 as active_mrr_usd,
    case when status in ('active', 'past_due') then true else false end as is_active,
    cast(started_at as date)            as started_at,
    cast(canceled_at as date)           as canceled_at
from {{ source('app', 'subscriptions') }}
