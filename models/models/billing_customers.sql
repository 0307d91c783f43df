-- Billing customers for identity resolution. `name` is sometimes the company, not a person.
-- email_domain is the billing email's domain, except for free-mail providers (NULL there),
-- so that it can block candidate pairs like the CRM's company_domain.
select
    cast(customer_id as bigint)         as customer_id,
    trim(billing_email)                 as billing_email,
    trim(name)                          as name,
    trim(phone)                         as phone,
    stripe_customer_id,
    case
        when lower(split_part(trim(billing_email), '@', 2)) in
             ('gmail.com', 'outlook.com', 'hotmail.com', 'yahoo.com', 'icloud.com', 'proton.me')
            then null
        else lower(split_part(trim(billing_email), '@', 2))
    end                                 as email_domain,
    cast(updated_at as timestamp)       as updated_at
from {{ source('tools', 'billing_customers') }}
